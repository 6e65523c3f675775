//! A line read or `read_until` started again after a cancel goes on scanning where the dropped
//! one stopped (written by the review of `2aebbf6`), with every other kind of read mixed in on
//! the same channel. A randomized differential test: the channel, its reads polled once
//! (dropped at random, or polled again after more bytes), against a plain model of the channel
//! whose every scan starts at the first buffered byte; the reads are line reads, `read_until`,
//! `discard`, `read_fully`, typed reads of several bytes, `read_bytes` (zero-copy and large),
//! `read_remaining`, `copy_to` and `read_frame` with tokio-util's `LinesCodec`. Also: the room
//! a decoder makes for a large frame, given back or kept as `ByteReadChannel`'s `# Memory`
//! section says.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use bytes::BytesMut;
use net_io::{ByteReadChannel, ByteWriteChannel, Error, LineEnding};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::codec::{Decoder, LinesCodec, LinesCodecError};

#[derive(Clone, Debug)]
enum Ev {
    Chunk(Vec<u8>),
    Timeout,
    Eof,
    Fail,
}

/// A transport that hands out one queued event per read, and otherwise waits.
#[derive(Clone, Default)]
struct Script(Arc<Mutex<VecDeque<Ev>>>);

impl AsyncRead for Script {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut q = self.0.lock().unwrap();
        match q.pop_front() {
            None => Poll::Pending,
            Some(Ev::Chunk(c)) => {
                assert!(buf.remaining() >= c.len(), "chunk does not fit");
                buf.put_slice(&c);
                Poll::Ready(Ok(()))
            }
            Some(Ev::Timeout) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, Error::Timeout)))
            }
            Some(Ev::Eof) => {
                q.push_front(Ev::Eof);
                Poll::Ready(Ok(()))
            }
            Some(Ev::Fail) => Poll::Ready(Err(io::ErrorKind::ConnectionReset.into())),
        }
    }
}

/// A destination for `copy_to` that takes every byte at once and keeps them.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl AsyncWrite for Sink {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        src: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.lock().unwrap().extend_from_slice(src);
        Poll::Ready(Ok(src.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Swaps 'a' and LF, 'b' and CR in the first buffered byte, in place, consuming nothing.
struct Flip;

fn flip(b: u8) -> u8 {
    match b {
        b'a' => b'\n',
        b'\n' => b'a',
        b'b' => b'\r',
        b'\r' => b'b',
        other => other,
    }
}

impl Decoder for Flip {
    type Item = u8;
    type Error = io::Error;
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<u8>> {
        if buf.is_empty() {
            return Ok(None);
        }
        buf[0] = flip(buf[0]);
        Ok(Some(buf[0]))
    }
}

fn err_str(e: &Error) -> String {
    match e {
        Error::TooLongLine { limit } => format!("TooLong({limit})"),
        Error::UnexpectedEof { needed, available } => format!("Eof({needed},{available})"),
        Error::Timeout => "Timeout".into(),
        Error::Io(e) => format!("Io({:?})", e.kind()),
        other => format!("{other:?}"),
    }
}

fn show(bytes: &[u8]) -> String {
    format!("{:?}", String::from_utf8_lossy(bytes))
}

// ----- the model ------------------------------------------------------------------------

#[derive(Clone, Debug)]
enum MSkip {
    Line(LineEnding),
    Until(Vec<u8>),
}

#[derive(Debug, PartialEq)]
enum LScan {
    Line(usize, usize, bool),
    NeedMore,
    TooLong,
    Exhausted,
}

#[derive(Debug, PartialEq)]
enum UScan {
    Found(usize),
    NeedMore,
    TooLong,
    Unterminated,
    Exhausted,
}

/// The line rules, scanned from the first byte every time.
fn ref_scan_line(buf: &[u8], limit: usize, ending: LineEnding, eof: bool) -> LScan {
    let len = buf.len();
    if len == 0 && eof {
        return LScan::Exhausted;
    }
    match ending {
        LineEnding::Default => {
            if let Some(i) = buf.iter().position(|&b| b == b'\n') {
                let content = if i > 0 && buf[i - 1] == b'\r' {
                    i - 1
                } else {
                    i
                };
                return if content > limit {
                    LScan::TooLong
                } else {
                    LScan::Line(content, i + 1, true)
                };
            }
            if eof {
                return if len > limit {
                    LScan::TooLong
                } else {
                    LScan::Line(len, len, false)
                };
            }
            let l1 = limit.checked_add(1);
            let over = match l1 {
                Some(l1) => len > l1 || (len == l1 && buf[limit] != b'\r'),
                None => false,
            };
            if over {
                LScan::TooLong
            } else {
                LScan::NeedMore
            }
        }
        _ => {
            if let Some(i) = buf.iter().position(|&b| b == b'\n' || b == b'\r') {
                if i > limit {
                    return LScan::TooLong;
                }
                if buf[i] == b'\n' {
                    return LScan::Line(i, i + 1, true);
                }
                return match buf.get(i + 1) {
                    Some(b'\n') => LScan::Line(i, i + 2, true),
                    Some(_) => LScan::Line(i, i + 1, true),
                    None if eof => LScan::Line(i, i + 1, true),
                    None => LScan::NeedMore,
                };
            }
            if len > limit {
                LScan::TooLong
            } else if eof {
                LScan::Line(len, len, false)
            } else {
                LScan::NeedMore
            }
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if hay.len() < needle.len() {
        return None;
    }
    (0..=hay.len() - needle.len()).find(|&p| &hay[p..p + needle.len()] == needle)
}

fn ref_scan_until(buf: &[u8], d: &[u8], limit: usize, eof: bool) -> UScan {
    let len = buf.len();
    if len == 0 && eof {
        return UScan::Exhausted;
    }
    if let Some(p) = find(buf, d) {
        if p <= limit {
            return UScan::Found(p);
        }
    }
    if len > limit {
        let from = len.saturating_sub(d.len() - 1);
        let may = !eof && (from..=limit).any(|p| d.starts_with(&buf[p..]));
        return if may { UScan::NeedMore } else { UScan::TooLong };
    }
    if eof {
        UScan::Unterminated
    } else {
        UScan::NeedMore
    }
}

#[derive(Default)]
struct Model {
    buf: Vec<u8>,
    consumed: u64,
    eof: bool,
    failed: bool,
    skip: Option<MSkip>,
    events: VecDeque<Ev>,
}

type MResult<T> = Poll<Result<T, String>>;

impl Model {
    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.consumed += n as u64;
    }

    fn fill(&mut self) -> MResult<usize> {
        if self.failed {
            return Poll::Ready(Err("Io(ConnectionReset)".into()));
        }
        if self.eof {
            return Poll::Ready(Ok(0));
        }
        match self.events.pop_front() {
            None => Poll::Pending,
            Some(Ev::Chunk(c)) => {
                self.buf.extend_from_slice(&c);
                Poll::Ready(Ok(c.len()))
            }
            Some(Ev::Timeout) => Poll::Ready(Err("Timeout".into())),
            Some(Ev::Eof) => {
                self.eof = true;
                Poll::Ready(Ok(0))
            }
            Some(Ev::Fail) => {
                self.failed = true;
                Poll::Ready(Err("Io(ConnectionReset)".into()))
            }
        }
    }

    fn do_skip(&mut self, skip: &MSkip) -> MResult<()> {
        loop {
            match skip {
                MSkip::Line(ending) => {
                    match ref_scan_line(&self.buf, usize::MAX, *ending, self.eof) {
                        LScan::Line(_, consumed, _) => {
                            self.consume(consumed);
                            break;
                        }
                        LScan::NeedMore => {
                            let len = self.buf.len();
                            let from = if *ending == LineEnding::Lenient
                                && self.buf.last() == Some(&b'\r')
                            {
                                len - 1
                            } else {
                                len
                            };
                            self.consume(from);
                        }
                        LScan::Exhausted | LScan::TooLong => break,
                    }
                }
                MSkip::Until(d) => {
                    if let Some(i) = find(&self.buf, d) {
                        self.consume(i + d.len());
                        break;
                    }
                    if self.eof {
                        let len = self.buf.len();
                        self.consume(len);
                        break;
                    }
                    let n = self.buf.len().saturating_sub(d.len() - 1);
                    self.consume(n);
                }
            }
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Ready(Ok(_)) => {}
            }
        }
        Poll::Ready(Ok(()))
    }

    fn skip_due(&mut self) -> MResult<()> {
        if let Some(skip) = self.skip.take() {
            match self.do_skip(&skip) {
                Poll::Ready(Ok(())) => {}
                other => {
                    self.skip = Some(skip);
                    return other;
                }
            }
        }
        Poll::Ready(Ok(()))
    }

    /// (content, consumed, delimited); nothing consumed but a skip.
    fn next_line(
        &mut self,
        limit: usize,
        ending: LineEnding,
    ) -> MResult<Option<(usize, usize, bool)>> {
        match self.skip_due() {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        loop {
            match ref_scan_line(&self.buf, limit, ending, self.eof) {
                LScan::Line(c, n, d) => return Poll::Ready(Ok(Some((c, n, d)))),
                LScan::Exhausted => return Poll::Ready(Ok(None)),
                LScan::TooLong => {
                    self.skip = Some(MSkip::Line(ending));
                    return Poll::Ready(Err(format!("TooLong({limit})")));
                }
                LScan::NeedMore => {}
            }
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    if !self.failed {
                        return Poll::Ready(Err(e));
                    }
                    return Poll::Ready(match ref_scan_line(&self.buf, limit, ending, true) {
                        LScan::Line(c, n, true) => Ok(Some((c, n, true))),
                        _ => Err(e),
                    });
                }
            }
        }
    }

    fn read_until(&mut self, d: &[u8], limit: usize) -> MResult<Option<Vec<u8>>> {
        match self.skip_due() {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Ready(Ok(())) => {}
        }
        loop {
            match ref_scan_until(&self.buf, d, limit, self.eof) {
                UScan::Found(c) => {
                    let item = self.buf[..c].to_vec();
                    self.consume(c + d.len());
                    return Poll::Ready(Ok(Some(item)));
                }
                UScan::Exhausted => return Poll::Ready(Ok(None)),
                UScan::TooLong => {
                    self.skip = Some(MSkip::Until(d.to_vec()));
                    return Poll::Ready(Err(format!("TooLong({limit})")));
                }
                UScan::Unterminated => {
                    // What the item needed: the bytes there and the delimiter's missing part.
                    let len = self.buf.len();
                    let begun = (1..d.len())
                        .rev()
                        .find(|&k| k <= len && self.buf[len - k..] == d[..k])
                        .unwrap_or(0);
                    return Poll::Ready(Err(format!("Eof({},{len})", len + d.len() - begun)));
                }
                UScan::NeedMore => {}
            }
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn line(&mut self, limit: usize, ending: LineEnding, strict: bool) -> MResult<Option<String>> {
        let r = match self.next_line(limit, ending) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        Poll::Ready(match r {
            Ok(None) => Ok(None),
            Ok(Some((_, consumed, false))) if strict => {
                Err(format!("Eof({},{consumed})", consumed + 1))
            }
            Ok(Some((content, consumed, _))) => {
                let line = String::from_utf8_lossy(&self.buf[..content]).into_owned();
                self.consume(consumed);
                Ok(Some(line))
            }
            Err(e) => Err(e),
        })
    }

    fn await_content(&mut self, n: usize) -> MResult<bool> {
        while self.buf.len() < n {
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(false)),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(true))
    }

    fn read_u8(&mut self) -> MResult<u8> {
        let complete = match self.await_content(1) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        self.skip = None;
        Poll::Ready(match complete {
            Err(e) => Err(e),
            Ok(false) => Err(format!("Eof(1,{})", self.buf.len())),
            Ok(true) => {
                let b = self.buf[0];
                self.consume(1);
                Ok(b)
            }
        })
    }

    fn peek(&mut self, n: usize) -> MResult<Option<Vec<u8>>> {
        match self.await_content(n) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(true)) => Poll::Ready(Ok(Some(self.buf[..n].to_vec()))),
            Poll::Ready(Ok(false)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
        }
    }

    /// `read_available` (`k` > 0, under a chunk).
    fn read_available(&mut self, k: usize) -> MResult<Vec<u8>> {
        if self.buf.is_empty() {
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => return Poll::Ready(Ok(Vec::new())),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.skip = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
        let n = self.buf.len().min(k);
        let out = self.buf[..n].to_vec();
        self.skip = None;
        self.consume(n);
        Poll::Ready(Ok(out))
    }

    /// `poll_fill_buf` then `consume(amt)`.
    fn fill_buf_consume(&mut self, amt: usize) -> MResult<Vec<u8>> {
        if self.buf.is_empty() {
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        let n = amt.min(self.buf.len());
        let out = self.buf[..n].to_vec();
        if n > 0 {
            self.skip = None;
        }
        self.consume(n);
        Poll::Ready(Ok(out))
    }

    fn skip_if_found(&mut self, pattern: &[u8]) -> MResult<bool> {
        let found = loop {
            let n = self.buf.len().min(pattern.len());
            if self.buf[..n] != pattern[..n] {
                break Ok(false);
            }
            if n == pattern.len() {
                break Ok(true);
            }
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => break Ok(false),
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => break Err(e),
            }
        };
        if matches!(found, Ok(true)) {
            self.skip = None;
            self.consume(pattern.len());
        }
        Poll::Ready(found)
    }

    /// `read_frame(&mut Flip)`.
    fn flip_frame(&mut self) -> MResult<Option<u8>> {
        loop {
            if self.eof {
                self.skip = None;
                if self.buf.is_empty() {
                    return Poll::Ready(Ok(None));
                }
                self.buf[0] = flip(self.buf[0]);
                return Poll::Ready(Ok(Some(self.buf[0])));
            }
            if !self.buf.is_empty() {
                self.skip = None;
                self.buf[0] = flip(self.buf[0]);
                return Poll::Ready(Ok(Some(self.buf[0])));
            }
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.skip = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// `discard(max)` polled once (not cancel safe: what it skipped before it waits is gone).
    fn discard(&mut self, max: u64) -> MResult<u64> {
        let mut skipped = 0u64;
        let mut done = Ok(());
        while skipped < max {
            if self.buf.is_empty() {
                match self.fill() {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        done = Err(e);
                        break;
                    }
                }
            }
            let n = ((max - skipped) as usize).min(self.buf.len());
            self.consume(n);
            self.skip = None;
            skipped += n as u64;
        }
        if max > 0 {
            self.skip = None;
        }
        Poll::Ready(done.map(|()| skipped))
    }

    /// `read_fully` of `k` bytes polled once: a timeout gives back what it took.
    fn read_fully(&mut self, k: usize) -> MResult<Vec<u8>> {
        let mut filled = Vec::new();
        while filled.len() < k {
            match self.read_available(k - filled.len()) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(b)) if b.is_empty() => {
                    return Poll::Ready(Err(format!("Eof({k},{})", filled.len())));
                }
                Poll::Ready(Ok(b)) => filled.extend_from_slice(&b),
                Poll::Ready(Err(e)) if e == "Timeout" => {
                    self.consumed -= filled.len() as u64;
                    filled.extend_from_slice(&self.buf);
                    self.buf = filled;
                    return Poll::Ready(Err(e));
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(filled))
    }
}

impl Model {
    /// A typed read or `read_bytes` of `n` bytes.
    fn read_n(&mut self, n: usize) -> MResult<Vec<u8>> {
        let complete = match self.await_content(n) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(r) => r,
        };
        if n > 0 {
            self.skip = None;
        }
        Poll::Ready(match complete {
            Err(e) => Err(e),
            Ok(false) => Err(format!("Eof({n},{})", self.buf.len())),
            Ok(true) => {
                let out = self.buf[..n].to_vec();
                self.consume(n);
                Ok(out)
            }
        })
    }

    fn remaining(&mut self, limit: usize) -> MResult<Vec<u8>> {
        let mut done = Ok(());
        while self.buf.len() < limit {
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(0)) => break,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    done = Err(e);
                    break;
                }
            }
        }
        if limit > 0 {
            self.skip = None;
        }
        Poll::Ready(done.map(|()| {
            let n = self.buf.len().min(limit);
            let out = self.buf[..n].to_vec();
            self.consume(n);
            out
        }))
    }

    /// `read_frame(&mut LinesCodec::new())`.
    fn lines(&mut self) -> MResult<Option<String>> {
        // The line is consumed before its text is checked: invalid UTF-8 is an error after it.
        fn strip(line: &[u8]) -> Result<Option<String>, String> {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            match String::from_utf8(line.to_vec()) {
                Ok(line) => Ok(Some(line)),
                Err(_) => Err("Io(InvalidData)".into()),
            }
        }
        loop {
            if let Some(i) = self.buf.iter().position(|&b| b == b'\n') {
                self.skip = None;
                let line = strip(&self.buf[..i]);
                self.consume(i + 1);
                return Poll::Ready(line);
            }
            if self.eof {
                self.skip = None;
                if self.buf.is_empty() || self.buf == b"\r" {
                    return Poll::Ready(Ok(None));
                }
                let line = strip(&self.buf);
                let len = self.buf.len();
                self.consume(len);
                return Poll::Ready(line);
            }
            match self.fill() {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(_)) => {}
                Poll::Ready(Err(e)) => {
                    self.skip = None;
                    return Poll::Ready(Err(e));
                }
            }
        }
    }

    /// `copy_to` polled once (not cancel safe, as `discard`).
    fn copy(&mut self, limit: u64) -> MResult<Vec<u8>> {
        let mut out = Vec::new();
        let mut done = Ok(());
        while (out.len() as u64) < limit {
            if self.buf.is_empty() {
                match self.fill() {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Ok(0)) => break,
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => {
                        done = Err(e);
                        break;
                    }
                }
            }
            let n = ((limit - out.len() as u64) as usize).min(self.buf.len());
            out.extend_from_slice(&self.buf[..n]);
            self.consume(n);
            self.skip = None;
        }
        if limit > 0 {
            self.skip = None;
        }
        Poll::Ready(done.map(|()| out))
    }
}

// ----- the harness ----------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const DELIMITERS: [&[u8]; 7] = [b"\n", b"\r\n", b"\r\n\r\n", b"ab", b"aba", b"ba", b"\r"];
const LIMITS: [usize; 12] = [
    0,
    1,
    2,
    3,
    4,
    6,
    9,
    15,
    40,
    1000,
    usize::MAX - 1,
    usize::MAX,
];

#[derive(Clone, Debug)]
enum Op {
    Line(usize, LineEnding),
    Strict(usize, LineEnding),
    LineTo(usize, LineEnding),
    Utf8(usize),
    Until(&'static [u8], usize),
    U8,
    Peek(usize),
    Available(usize),
    FillBuf(usize),
    SkipIfFound(&'static [u8]),
    FlipFrame,
    Discard(u64),
    Fully(usize),
    /// A typed read of 2, 4 or 8 bytes.
    Typed(usize),
    Bytes(usize),
    Remaining(usize),
    Lines,
    Copy(u64),
}

impl Op {
    fn cancel_safe(&self) -> bool {
        !matches!(self, Op::Discard(_) | Op::Fully(_) | Op::Copy(_))
    }

    fn random(rng: &mut Rng) -> Op {
        let limit = LIMITS[rng.below(LIMITS.len())];
        let ending = if rng.chance(50) {
            LineEnding::Default
        } else {
            LineEnding::Lenient
        };
        match rng.below(130) {
            0..=29 => Op::Line(limit, ending),
            30..=37 => Op::Strict(limit, ending),
            38..=45 => Op::LineTo(limit, ending),
            46..=50 => Op::Utf8(limit),
            51..=72 => Op::Until(DELIMITERS[rng.below(DELIMITERS.len())], limit),
            73..=75 => Op::U8,
            76..=78 => Op::Peek(1 + rng.below(4)),
            79..=81 => Op::Available(1 + rng.below(4)),
            82..=84 => Op::FillBuf(rng.below(4)),
            85..=87 => Op::SkipIfFound(DELIMITERS[rng.below(DELIMITERS.len())]),
            88..=92 => Op::FlipFrame,
            93..=96 => Op::Discard(rng.below(4) as u64),
            97..=99 => Op::Fully(1 + rng.below(4)),
            100..=105 => Op::Typed([2, 4, 8][rng.below(3)]),
            106..=111 => Op::Bytes(rng.below(6)),
            112..=116 => Op::Remaining(rng.below(6)),
            117..=124 => Op::Lines,
            _ => Op::Copy(rng.below(6) as u64),
        }
    }

    /// The same kind of read again (a `select!` loop), perhaps with another limit.
    fn again(&self, rng: &mut Rng) -> Op {
        let limit = LIMITS[rng.below(LIMITS.len())];
        let change = rng.chance(30);
        match *self {
            Op::Line(l, e) => Op::Line(if change { limit } else { l }, e),
            Op::Strict(l, e) => Op::Strict(if change { limit } else { l }, e),
            Op::LineTo(l, e) => Op::LineTo(if change { limit } else { l }, e),
            Op::Utf8(l) => Op::Utf8(if change { limit } else { l }),
            Op::Until(d, l) => Op::Until(d, if change { limit } else { l }),
            ref other => other.clone(),
        }
    }
}

fn fmt<T>(r: Result<T, Error>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("err {}", err_str(&e)),
    }
}

fn mfmt<T>(r: Result<T, String>, ok: impl FnOnce(T) -> String) -> String {
    match r {
        Ok(v) => ok(v),
        Err(e) => format!("err {e}"),
    }
}

fn line_str(l: Option<String>) -> String {
    match l {
        Some(l) => format!("line {l:?}"),
        None => "none".into(),
    }
}

fn real_op<'a>(ch: &'a mut ByteReadChannel, op: &Op) -> Pin<Box<dyn Future<Output = String> + 'a>> {
    let op = op.clone();
    Box::pin(async move {
        match op {
            Op::Line(l, e) => fmt(ch.read_line(l, e).await, line_str),
            Op::Strict(l, e) => fmt(ch.read_line_strict(l, e).await, line_str),
            Op::LineTo(l, e) => {
                let mut s = String::new();
                let r = ch.read_line_to(&mut s, l, e).await;
                fmt(
                    r.map(|n| {
                        n.map(|n| {
                            assert_eq!(n, s.len());
                            s.clone()
                        })
                    }),
                    line_str,
                )
            }
            Op::Utf8(l) => fmt(ch.read_utf8_line(l).await, line_str),
            Op::Until(d, l) => fmt(ch.read_until(d, l).await, |i| match i {
                Some(i) => format!("item {}", show(&i)),
                None => "none".into(),
            }),
            Op::U8 => fmt(ch.read_u8().await, |b| format!("u8 {b}")),
            Op::Peek(n) => fmt(ch.peek(n).await, |p| match p {
                Some(p) => format!("peek {}", show(&p)),
                None => "peek none".into(),
            }),
            Op::Available(k) => {
                let mut dst = vec![0; k];
                let r = ch.read_available(&mut dst).await;
                fmt(r, |n| format!("avail {}", show(&dst[..n])))
            }
            Op::FillBuf(amt) => {
                let r = std::future::poll_fn(|cx| {
                    let mut pinned = Pin::new(&mut *ch);
                    let got = match pinned.as_mut().poll_fill_buf(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(Error::from(e))),
                        Poll::Ready(Ok(got)) => got.to_vec(),
                    };
                    let n = amt.min(got.len());
                    pinned.consume(n);
                    Poll::Ready(Ok(got[..n].to_vec()))
                })
                .await;
                fmt(r, |b| format!("fb {}", show(&b)))
            }
            Op::SkipIfFound(p) => fmt(ch.skip_if_found(p).await, |f| format!("found {f}")),
            Op::FlipFrame => fmt(ch.read_frame(&mut Flip).await.map_err(Error::from), |f| {
                format!("frame {f:?}")
            }),
            Op::Discard(n) => fmt(ch.discard(n).await, |n| format!("discarded {n}")),
            Op::Fully(k) => {
                let mut dst = vec![0; k];
                let r = ch.read_fully(&mut dst).await;
                fmt(r, |()| format!("fully {}", show(&dst)))
            }
            Op::Typed(size) => {
                let r = match size {
                    2 => ch.read_u16().await.map(|v| v.to_be_bytes().to_vec()),
                    4 => ch.read_u32_le().await.map(|v| v.to_le_bytes().to_vec()),
                    _ => ch.read_u64().await.map(|v| v.to_be_bytes().to_vec()),
                };
                fmt(r, |b| format!("typed {}", show(&b)))
            }
            Op::Bytes(n) => fmt(ch.read_bytes(n).await, |b| format!("bytes {}", show(&b))),
            Op::Remaining(n) => fmt(ch.read_remaining(n).await, |b| format!("rem {}", show(&b))),
            Op::Lines => {
                let r = ch.read_frame(&mut LinesCodec::new()).await;
                let r = r.map_err(|e| match e {
                    LinesCodecError::Io(e) => Error::from(e),
                    other => panic!("{other:?}"),
                });
                fmt(r, |l| format!("lines {l:?}"))
            }
            Op::Copy(limit) => {
                let sink = Sink::default();
                let mut w = ByteWriteChannel::new(sink.clone(), false);
                let res = ch.copy_to(&mut w, limit).await;
                drop(w);
                let got = sink.0.lock().unwrap().clone();
                fmt(res, |n| {
                    assert_eq!(n as usize, got.len());
                    format!("copied {}", show(&got))
                })
            }
        }
    })
}

fn model_op(m: &mut Model, op: &Op) -> Poll<String> {
    let items = |i: Option<Vec<u8>>| match i {
        Some(i) => format!("item {}", show(&i)),
        None => "none".into(),
    };
    match *op {
        Op::Line(l, e) | Op::LineTo(l, e) => m.line(l, e, false).map(|r| mfmt(r, line_str)),
        Op::Strict(l, e) => m.line(l, e, true).map(|r| mfmt(r, line_str)),
        Op::Utf8(l) => m
            .line(l, LineEnding::Lenient, false)
            .map(|r| mfmt(r, line_str)),
        Op::Until(d, l) => m.read_until(d, l).map(|r| mfmt(r, items)),
        Op::U8 => m.read_u8().map(|r| mfmt(r, |b| format!("u8 {b}"))),
        Op::Peek(n) => m.peek(n).map(|r| {
            mfmt(r, |p| match p {
                Some(p) => format!("peek {}", show(&p)),
                None => "peek none".into(),
            })
        }),
        Op::Available(k) => m
            .read_available(k)
            .map(|r| mfmt(r, |b| format!("avail {}", show(&b)))),
        Op::FillBuf(amt) => m
            .fill_buf_consume(amt)
            .map(|r| mfmt(r, |b| format!("fb {}", show(&b)))),
        Op::SkipIfFound(p) => m
            .skip_if_found(p)
            .map(|r| mfmt(r, |f| format!("found {f}"))),
        Op::FlipFrame => m.flip_frame().map(|r| mfmt(r, |f| format!("frame {f:?}"))),
        Op::Discard(n) => m.discard(n).map(|r| mfmt(r, |n| format!("discarded {n}"))),
        Op::Fully(k) => m
            .read_fully(k)
            .map(|r| mfmt(r, |b| format!("fully {}", show(&b)))),
        Op::Typed(n) => m
            .read_n(n)
            .map(|r| mfmt(r, |b| format!("typed {}", show(&b)))),
        Op::Bytes(n) => m
            .read_n(n)
            .map(|r| mfmt(r, |b| format!("bytes {}", show(&b)))),
        Op::Remaining(n) => m
            .remaining(n)
            .map(|r| mfmt(r, |b| format!("rem {}", show(&b)))),
        Op::Lines => m.lines().map(|r| mfmt(r, |l| format!("lines {l:?}"))),
        Op::Copy(n) => m
            .copy(n)
            .map(|r| mfmt(r, |b| format!("copied {}", show(&b)))),
    }
}

fn random_event(rng: &mut Rng, ended: &mut bool) -> Option<Ev> {
    if *ended {
        return None;
    }
    let r = rng.below(1000);
    Some(if r < 30 {
        Ev::Timeout
    } else if r < 42 {
        *ended = true;
        Ev::Eof
    } else if r < 50 {
        *ended = true;
        Ev::Fail
    } else {
        // 'u': a byte of invalid UTF-8 (0xff); 'e': the two bytes of U+00E9.
        const ALPHABET: [u8; 22] = *b"aaaaaabbbrrrrnnnnxxxue";
        let len = 1 + rng.below(5);
        Ev::Chunk(
            (0..len)
                .flat_map(|_| match ALPHABET[rng.below(ALPHABET.len())] {
                    b'r' => vec![b'\r'],
                    b'n' => vec![b'\n'],
                    b'u' => vec![0xff],
                    b'e' => "\u{e9}".as_bytes().to_vec(),
                    other => vec![other],
                })
                .collect(),
        )
    })
}

fn push(script: &Script, m: &mut Model, ev: Ev, log: &mut Vec<String>) {
    log.push(format!("  + {ev:?}"));
    script.0.lock().unwrap().push_back(ev.clone());
    m.events.push_back(ev);
}

/// Runs one seed; returns the log of the first difference.
fn run_seed(seed: u64, steps: usize, big: bool) -> Result<(), String> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let script = Script::default();
    let mut ch = ByteReadChannel::new(script.clone());
    let mut m = Model::default();
    let mut ended = false;
    let mut log = Vec::new();
    let mut cx = Context::from_waker(Waker::noop());
    let mut last: Option<Op> = None;
    for step in 0..steps {
        for _ in 0..rng.below(3) {
            if let Some(ev) = random_event(&mut rng, &mut ended) {
                push(&script, &mut m, ev, &mut log);
            }
        }
        if big && !ended && rng.chance(4) {
            // Past 256 KiB buffered (the buffer is given back once a large item passed), in
            // reads of 1 KiB (the first read of a channel takes at most 1 KiB).
            let byte = if rng.chance(50) { b'x' } else { b'a' };
            log.push("  + 300 chunks of 1 KiB".into());
            for _ in 0..300 {
                let ev = Ev::Chunk(vec![byte; 1024]);
                script.0.lock().unwrap().push_back(ev.clone());
                m.events.push_back(ev);
            }
        }
        let mut op = match &last {
            Some(last) if rng.chance(55) => last.again(&mut rng),
            _ => Op::random(&mut rng),
        };
        if big {
            op = match op {
                Op::Line(_, e) if rng.chance(50) => Op::Line(1 << 20, e),
                Op::Until(d, _) if rng.chance(50) => Op::Until(d, 1 << 20),
                Op::Available(_) if rng.chance(50) => Op::Available(9000),
                Op::Discard(_) if rng.chance(50) => Op::Discard(200_000),
                Op::Bytes(_) if rng.chance(50) => Op::Bytes([1500, 300_000][rng.below(2)]),
                Op::Remaining(_) if rng.chance(50) => Op::Remaining(300_000),
                Op::Copy(_) if rng.chance(50) => Op::Copy(200_000),
                other => other,
            };
        }
        last = Some(op.clone());
        let mut fut = real_op(&mut ch, &op);
        let mut polls = 0;
        loop {
            let real = fut.as_mut().poll(&mut cx);
            let model = model_op(&mut m, &op);
            let clip = |p: &Poll<String>| {
                let s = format!("{p:?}");
                if s.len() > 200 {
                    format!("{}...({} chars)", &s[..200], s.len())
                } else {
                    s
                }
            };
            log.push(format!(
                "{step}: {op:?} -> real {}, model {}",
                clip(&real),
                clip(&model)
            ));
            if real != model {
                drop(fut);
                return Err(log.join("\n"));
            }
            if real.is_ready() {
                break;
            }
            if polls < 3 && op.cancel_safe() && rng.chance(40) {
                polls += 1;
                for _ in 0..1 + rng.below(2) {
                    if let Some(ev) = random_event(&mut rng, &mut ended) {
                        push(&script, &mut m, ev, &mut log);
                    }
                }
                continue;
            }
            break; // dropped: a `select!` whose other branch won
        }
        drop(fut);
        let (t, a) = (ch.total_bytes_read(), ch.available_for_read());
        if t != m.consumed || a != m.buf.len() {
            log.push(format!(
                "after {step}: real total {t} buffered {a}, model total {} buffered {}",
                m.consumed,
                m.buf.len()
            ));
            return Err(log.join("\n"));
        }
    }
    Ok(())
}

/// Every read, dropped at random after one poll, or polled again after more bytes, gives what
/// a channel that scans every item from its first byte gives (2,000 seeds of 80 reads).
#[test]
fn reads_dropped_and_started_again_match_a_channel_that_scans_from_the_start() {
    let seeds: u64 = std::env::var("RESUME_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut failures = Vec::new();
    for seed in 0..seeds {
        if let Err(log) = run_seed(seed, 80, false) {
            failures.push((seed, log));
        }
    }
    if let Some((seed, log)) = failures.first() {
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "{} of {seeds} seeds differ; first: seed {seed}:\n{}",
            failures.len(),
            tail.join("\n")
        );
    }
}

/// Frames::next_frame (5d1e5d3): "what the Stream yields next ... None at the end of the stream
/// and after the first error", and cancel safe: next_frame futures dropped after one poll,
/// mixed with poll_next, yield what poll_next alone yields.
#[test]
fn next_frame_dropped_and_mixed_with_poll_next_yields_what_the_stream_yields() {
    use futures_core::Stream;
    use tokio_util::codec::LinesCodec;
    let chunks: [&[u8]; 6] = [b"ab", b"c\nd", b"e", b"\n\nf", b"g", b"h\n"];
    let run = |mixed: bool| -> Vec<String> {
        let script = Script::default();
        let mut frames = ByteReadChannel::new(script.clone()).into_frames(LinesCodec::new());
        let mut cx = Context::from_waker(Waker::noop());
        let mut seen = Vec::new();
        let mut events: VecDeque<Ev> = chunks.iter().map(|c| Ev::Chunk(c.to_vec())).collect();
        events.push_back(Ev::Fail);
        for i in 0..200 {
            let next = if mixed && i % 2 == 0 {
                let fut = frames.next_frame();
                let mut fut = std::pin::pin!(fut);
                fut.as_mut().poll(&mut cx)
            } else {
                Pin::new(&mut frames).poll_next(&mut cx)
            };
            match next {
                Poll::Pending => match events.pop_front() {
                    Some(ev) => script.0.lock().unwrap().push_back(ev),
                    None => panic!("pending with nothing left to send"),
                },
                Poll::Ready(Some(Ok(line))) => seen.push(format!("line {line:?}")),
                Poll::Ready(Some(Err(e))) => seen.push(format!("err {e}")),
                Poll::Ready(None) => {
                    seen.push("end".into());
                    if seen.iter().filter(|s| *s == "end").count() == 3 {
                        return seen;
                    }
                }
            }
        }
        panic!("no end: {seen:?}");
    };
    let alone = run(false);
    assert_eq!(
        alone[..4],
        ["line \"abc\"", "line \"de\"", "line \"\"", "line \"fgh\""],
        "{alone:?}"
    );
    assert!(alone[4].starts_with("err"), "{alone:?}");
    assert_eq!(alone[5..], ["end", "end", "end"], "{alone:?}");
    assert_eq!(run(true), alone);
}

/// As above, with reads of 300 KiB at once (a buffer grown past 256 KiB, then given back
/// while a partial item is buffered), limits of 1 MiB, and reads straight into a large
/// destination.
#[test]
fn reads_dropped_and_started_again_match_with_large_buffers() {
    let seeds: u64 = std::env::var("RESUME_BIG_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    for seed in 0..seeds {
        if let Err(log) = run_seed(1_000_000 + seed, 60, true) {
            let tail: Vec<&str> = log
                .lines()
                .rev()
                .take(40)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            panic!("seed {seed}:\n{}", tail.join("\n"));
        }
    }
}

/// A decoder of frames that start with a 4-byte big-endian length of the bytes after it: it
/// makes room for the whole frame when it reads the length (as tokio-util's
/// `LengthDelimitedCodec` does), and notes the buffer's length and capacity at every call, after
/// its own `reserve`.
#[derive(Default)]
struct Announced {
    calls: Vec<(usize, usize)>,
    reserved: bool,
}

impl Decoder for Announced {
    type Item = BytesMut;
    type Error = io::Error;
    fn decode(&mut self, buf: &mut BytesMut) -> io::Result<Option<BytesMut>> {
        if buf.len() < 4 {
            self.calls.push((buf.len(), buf.capacity()));
            return Ok(None);
        }
        let whole = 4 + u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize;
        if !self.reserved {
            self.reserved = true;
            buf.reserve(whole.saturating_sub(buf.len()));
        }
        self.calls.push((buf.len(), buf.capacity()));
        if buf.len() < whole {
            return Ok(None);
        }
        self.reserved = false;
        Ok(Some(buf.split_to(whole)))
    }
}

/// `# Memory`: "room past 256 KiB and past twice what is buffered and 64 KiB more is given back
/// at once, before the next read from the transport". A decoder makes room for a frame when some
/// of it is buffered already (read ahead by a look-ahead). The docs said "past twice what is
/// buffered" and left out the 64 KiB the channel allows (as the change that gave the room back
/// meant): 300 KiB of room made with 120 KiB buffered was kept, against the docs. The room kept
/// within the 64 KiB is bounded all the same.
#[test]
fn decoder_room_past_256_kib_and_twice_what_is_buffered_and_64_kib_is_given_back() {
    let mut cx = Context::from_waker(Waker::noop());
    let mut kept = Vec::new();
    let (mut given_back, mut within) = (0, 0);
    for before in (64..=160).step_by(8) {
        let before = before * 1024;
        for frame in [300 * 1024, 400 * 1024] {
            let script = Script::default();
            let mut ch = ByteReadChannel::new(script.clone());
            let mut bytes = (frame as u32).to_be_bytes().to_vec();
            bytes.resize(before, b'x');
            for chunk in bytes.chunks(1024) {
                script
                    .0
                    .lock()
                    .unwrap()
                    .push_back(Ev::Chunk(chunk.to_vec()));
            }
            // A look-ahead reads what came of the frame.
            {
                let mut ahead = std::pin::pin!(ch.await_content(before));
                let mut polls = 0;
                while ahead.as_mut().poll(&mut cx).is_pending() {
                    polls += 1;
                    assert!(polls < 10_000);
                }
            }
            let mut decoder = Announced::default();
            {
                let mut read = std::pin::pin!(ch.read_frame(&mut decoder));
                assert!(read.as_mut().poll(&mut cx).is_pending());
                // One more chunk: the next call sees the buffer after the read.
                script
                    .0
                    .lock()
                    .unwrap()
                    .push_back(Ev::Chunk(vec![b'x'; 1024]));
                assert!(read.as_mut().poll(&mut cx).is_pending());
            }
            let (len, room) = decoder.calls[0];
            let (_, later) = decoder.calls[decoder.calls.len() - 1];
            let past = room > 256 * 1024 && room > 2 * len + 64 * 1024;
            if past && later >= room {
                kept.push(format!(
                    "{len} bytes buffered, room for {room} made by the decoder, {later} still held after the next read"
                ));
            }
            if past {
                given_back += 1;
            } else if room > 256 * 1024 && room > 2 * len {
                within += 1;
            }
        }
    }
    assert!(kept.is_empty(), "room kept:\n{}", kept.join("\n"));
    // Both cases were met: room given back, and room within the 64 KiB kept.
    assert!(given_back > 0 && within > 0, "{given_back} {within}");
}
