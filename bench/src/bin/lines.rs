//! Line parsing in memory: `ByteReadChannel::read_line_to` (and `read_line`) against
//! tokio-util's `LinesCodec` on the same input, alternating runs (the order rotated every round),
//! medians and ratios.
//!
//! Each contender reads from a `std::io::Cursor` over its own copy of the input (made before
//! the clock starts), so both pay the same copy from the reader into their buffers.
//!
//! Before anything is timed, every contender reads the input once into a [`Digest`] (each
//! line's length and bytes, in order, hashed), which must equal the digest of the lines cut from
//! the input by a plain split on `\n` (a CR before it dropped): a contender that returned wrong
//! lines, or the right number of lines of the right lengths with wrong bytes, is refused. The
//! timed rounds only count lines and bytes (a [`Count`]), so that hashing is not timed, and
//! those counts must match too.
//!
//! `lines [--smoke]`: `--smoke` runs one tiny round to prove the harness works.

use std::future::poll_fn;
use std::hash::{DefaultHasher, Hasher};
use std::io::Cursor;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bench::{Rng, median};
use futures_core::Stream;
use net_io::{ByteReadChannel, LineEnding};
use tokio_util::codec::{FramedRead, LinesCodec};

const LIMIT: usize = 8 * 1024;

/// The contenders, in the table's order (the baseline first).
const NAMES: [&str; 3] = [
    "tokio-util LinesCodec (baseline)",
    "net-io read_line_to (reused String)",
    "net-io read_line (String per line)",
];

fn main() -> Result<()> {
    let mut smoke = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--smoke" => smoke = true,
            _ => bail!("unknown argument {arg:?} (usage: lines [--smoke])"),
        }
    }
    let (lines, rounds) = if smoke { (10_000, 1) } else { (1_000_000, 7) };
    let input = make_input(lines);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;

    // Every contender must return the same lines as the model, byte for byte.
    let expected = model(&input)?;
    for (i, name) in NAMES.iter().enumerate() {
        let got = rt.block_on(contender::<Digest>(i, input.clone()))?;
        check(name, &got, &expected)?;
    }

    let mut times: [Vec<Duration>; 3] = Default::default();
    for round in 0..rounds {
        // The order rotates every round (0 1 2, then 1 2 0, then 2 0 1), as netbench's does:
        // in a fixed order the first contender would always run on a cold cache and after the
        // same neighbour, and a machine that speeds up or slows down within a round would
        // favour the same one each time.
        for k in 0..NAMES.len() {
            let i = (round + k) % NAMES.len();
            let copy = input.clone(); // outside the timed work
            let start = Instant::now();
            let got = rt.block_on(contender::<Count>(i, copy))?;
            times[i].push(start.elapsed());
            ensure!(
                got == expected.count,
                "{}: {got:?} in a timed round, {:?} expected",
                NAMES[i],
                expected.count
            );
        }
    }
    let mb = input.len() as f64 / 1e6;
    let base = median(&mut times[0].clone());
    println!(
        "line parsing: {lines} lines, {mb:.1} MB in memory, {rounds} rounds in rotating order, \
         median (every contender's lines checked against the input first)"
    );
    println!(
        "{:<38} {:>10} {:>10} {:>8}",
        "contender", "ms", "MB/s", "ratio"
    );
    for (name, t) in NAMES.iter().zip(times.iter_mut()) {
        let m = median(t);
        println!(
            "{name:<38} {:>10.1} {:>10.0} {:>7.2}x",
            m.as_secs_f64() * 1e3,
            mb / m.as_secs_f64(),
            base.as_secs_f64() / m.as_secs_f64()
        );
    }
    Ok(())
}

/// Lines of 0 to 120 bytes, mostly ASCII with some multi-byte UTF-8, LF or CRLF ended.
fn make_input(lines: usize) -> Vec<u8> {
    let mut rng = Rng::new(0x5eed);
    let mut out = Vec::with_capacity(lines * 64);
    for _ in 0..lines {
        let len = rng.below(121);
        for _ in 0..len {
            match rng.below(40) {
                0 => out.extend_from_slice("é".as_bytes()),
                1 => out.extend_from_slice("€".as_bytes()),
                _ => out.push(b'a' + rng.below(26) as u8),
            }
        }
        if rng.below(2) == 0 {
            out.push(b'\r');
        }
        out.push(b'\n');
    }
    out
}

/// What a contender does with each line it returns.
trait Tally: Default {
    fn line(&mut self, line: &str);
}

/// Lines and content bytes: all a timed round keeps.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Count {
    lines: usize,
    bytes: usize,
}

impl Tally for Count {
    fn line(&mut self, line: &str) {
        self.lines += 1;
        self.bytes += line.len();
    }
}

/// The count and a hash of every line's length and bytes, in order: equal digests mean the same
/// lines (up to a 64-bit hash collision), not merely as many of the same lengths.
#[derive(Debug, Default, Clone)]
struct Digest {
    count: Count,
    hash: DefaultHasher,
}

impl Tally for Digest {
    fn line(&mut self, line: &str) {
        self.count.line(line);
        self.hash.write_usize(line.len());
        self.hash.write(line.as_bytes());
    }
}

impl PartialEq for Digest {
    fn eq(&self, other: &Digest) -> bool {
        self.count == other.count && self.hash.finish() == other.hash.finish()
    }
}

/// The lines of `input` as the benchmark's rules cut them, by a plain split: each ends at `\n`,
/// a `\r` before it is not content, and every line is UTF-8. (`make_input` ends every line, so
/// nothing follows the last `\n`.)
fn model(input: &[u8]) -> Result<Digest> {
    let mut digest = Digest::default();
    let body = input
        .strip_suffix(b"\n")
        .context("the input does not end with a line feed")?;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        digest.line(std::str::from_utf8(raw).with_context(|| format!("line {i} is not UTF-8"))?);
    }
    Ok(digest)
}

/// Fails unless a contender's lines are the model's.
fn check(name: &str, got: &Digest, expected: &Digest) -> Result<()> {
    ensure!(
        got.count == expected.count,
        "{name} returned {:?}, the input has {:?}",
        got.count,
        expected.count
    );
    ensure!(
        got == expected,
        "{name} returned as many lines and bytes as the input has, but not the same lines"
    );
    Ok(())
}

/// Runs contender `i` (an index into [`NAMES`]) over `input`.
async fn contender<T: Tally>(i: usize, input: Vec<u8>) -> Result<T> {
    match i {
        0 => codec(input).await,
        1 => ours_to(input).await,
        _ => ours_alloc(input).await,
    }
}

async fn ours_to<T: Tally>(input: Vec<u8>) -> Result<T> {
    let mut channel = ByteReadChannel::new(Cursor::new(input));
    let mut line = String::new();
    let mut tally = T::default();
    while channel
        .read_line_to(&mut line, LIMIT, LineEnding::Default)
        .await?
        .is_some()
    {
        tally.line(&line);
        line.clear();
    }
    Ok(tally)
}

async fn ours_alloc<T: Tally>(input: Vec<u8>) -> Result<T> {
    let mut channel = ByteReadChannel::new(Cursor::new(input));
    let mut tally = T::default();
    while let Some(line) = channel.read_line(LIMIT, LineEnding::Default).await? {
        tally.line(&line);
    }
    Ok(tally)
}

async fn codec<T: Tally>(input: Vec<u8>) -> Result<T> {
    let mut framed = FramedRead::new(Cursor::new(input), LinesCodec::new_with_max_length(LIMIT));
    let mut tally = T::default();
    while let Some(line) = poll_fn(|cx| Pin::new(&mut framed).poll_next(cx)).await {
        tally.line(&line?);
    }
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn every_contender_returns_the_lines_of_the_input() {
        let input = make_input(2_000);
        let expected = model(&input).unwrap();
        assert_eq!(expected.count.lines, 2_000);
        for (i, name) in NAMES.iter().enumerate() {
            let got = block_on(contender::<Digest>(i, input.clone())).unwrap();
            check(name, &got, &expected).unwrap();
            let count = block_on(contender::<Count>(i, input.clone())).unwrap();
            assert_eq!(count, expected.count, "{name}");
        }
    }

    /// A reader that returns as many lines as `ours_to`, each as long as it should be, but with
    /// its characters in reverse order: counting lines and bytes cannot tell it from a right one.
    async fn reversed(input: Vec<u8>) -> Result<(Count, Digest)> {
        let mut channel = ByteReadChannel::new(Cursor::new(input));
        let (mut line, mut count, mut digest) =
            (String::new(), Count::default(), Digest::default());
        while channel
            .read_line_to(&mut line, LIMIT, LineEnding::Default)
            .await?
            .is_some()
        {
            let wrong: String = line.chars().rev().collect();
            count.line(&wrong);
            digest.line(&wrong);
            line.clear();
        }
        Ok((count, digest))
    }

    #[test]
    fn a_reader_returning_wrong_lines_of_the_right_lengths_is_refused() {
        let input = make_input(2_000);
        let expected = model(&input).unwrap();
        let (count, digest) = block_on(reversed(input)).unwrap();
        // Counting alone (what the benchmark once compared) sees nothing wrong.
        assert_eq!(count, expected.count);
        let err = check("reversed", &digest, &expected).expect_err("wrong lines");
        assert!(err.to_string().contains("not the same lines"), "{err:#}");
    }

    #[test]
    fn a_reader_swapping_two_lines_is_refused() {
        let input = b"ab\r\ncd\n\nef\n".to_vec();
        let expected = model(&input).unwrap();
        assert_eq!(expected.count, Count { lines: 4, bytes: 6 });
        let mut swapped = Digest::default();
        for line in ["cd", "ab", "", "ef"] {
            swapped.line(line);
        }
        assert!(check("swapped", &swapped, &expected).is_err());
        // A line boundary moved: the same bytes, cut differently.
        let mut moved = Digest::default();
        for line in ["a", "bcd", "", "ef"] {
            moved.line(line);
        }
        assert!(check("moved", &moved, &expected).is_err());
        let mut right = Digest::default();
        for line in ["ab", "cd", "", "ef"] {
            right.line(line);
        }
        check("right", &right, &expected).unwrap();
    }
}
