//! Line parsing in memory: `ByteReadChannel::read_line_to` (and `read_line`) against
//! tokio-util's `LinesCodec` on the same input, alternating runs, medians and ratios.
//!
//! Each contender reads from a `std::io::Cursor` over its own copy of the input (made before
//! the clock starts), so both pay the same copy from the reader into their buffers.
//!
//! `lines [--smoke]`: `--smoke` runs one tiny round to prove the harness works.

use std::future::poll_fn;
use std::io::Cursor;
use std::pin::Pin;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use bench::{Rng, median};
use futures_core::Stream;
use net_io::{ByteReadChannel, LineEnding};
use tokio_util::codec::{FramedRead, LinesCodec};

const LIMIT: usize = 8 * 1024;

fn main() -> Result<()> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    let (lines, rounds) = if smoke { (10_000, 1) } else { (1_000_000, 7) };
    let input = make_input(lines);
    let rt = tokio::runtime::Builder::new_current_thread().build()?;

    // Every contender must see the same lines and bytes.
    let expected = rt.block_on(ours_to(input.clone()))?;
    ensure!(
        rt.block_on(ours_alloc(input.clone()))? == expected,
        "read_line disagrees"
    );
    ensure!(
        rt.block_on(codec(input.clone()))? == expected,
        "LinesCodec disagrees"
    );

    let mut times: [Vec<Duration>; 3] = Default::default();
    for _ in 0..rounds {
        for (i, slot) in times.iter_mut().enumerate() {
            let copy = input.clone(); // outside the timed work
            let start = Instant::now();
            let got = match i {
                0 => rt.block_on(codec(copy))?,
                1 => rt.block_on(ours_to(copy))?,
                _ => rt.block_on(ours_alloc(copy))?,
            };
            slot.push(start.elapsed());
            ensure!(got == expected);
        }
    }
    let mb = input.len() as f64 / 1e6;
    let base = median(&mut times[0].clone());
    println!(
        "line parsing: {lines} lines, {mb:.1} MB in memory, {rounds} alternating rounds, median"
    );
    println!(
        "{:<38} {:>10} {:>10} {:>8}",
        "contender", "ms", "MB/s", "ratio"
    );
    for (name, t) in [
        "tokio-util LinesCodec (baseline)",
        "net-io read_line_to (reused String)",
        "net-io read_line (String per line)",
    ]
    .iter()
    .zip(times.iter_mut())
    {
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

/// (lines, content bytes) as counted by each contender.
type Count = (usize, usize);

async fn ours_to(input: Vec<u8>) -> Result<Count> {
    let mut channel = ByteReadChannel::new(Cursor::new(input));
    let mut line = String::new();
    let (mut n, mut bytes) = (0, 0);
    while let Some(len) = channel
        .read_line_to(&mut line, LIMIT, LineEnding::Default)
        .await?
    {
        n += 1;
        bytes += len;
        line.clear();
    }
    Ok((n, bytes))
}

async fn ours_alloc(input: Vec<u8>) -> Result<Count> {
    let mut channel = ByteReadChannel::new(Cursor::new(input));
    let (mut n, mut bytes) = (0, 0);
    while let Some(line) = channel.read_line(LIMIT, LineEnding::Default).await? {
        n += 1;
        bytes += line.len();
    }
    Ok((n, bytes))
}

async fn codec(input: Vec<u8>) -> Result<Count> {
    let mut framed = FramedRead::new(Cursor::new(input), LinesCodec::new_with_max_length(LIMIT));
    let (mut n, mut bytes) = (0, 0);
    while let Some(line) = poll_fn(|cx| Pin::new(&mut framed).poll_next(cx)).await {
        n += 1;
        bytes += line?.len();
    }
    Ok((n, bytes))
}
