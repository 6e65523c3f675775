//! Shared helpers for the benchmark programs (`src/bin/`, `benches/netbench`; run them with
//! `cargo xtask bench`).

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// A small deterministic pseudo-random generator (xorshift64*), so every run sees the same input.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced by a fixed non-zero seed).
    pub fn new(seed: u64) -> Self {
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The median of some durations (sorts them in place): the middle one, or the mean of the
/// middle two for an even count; zero for none.
pub fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    let n = times.len();
    match n {
        0 => Duration::ZERO,
        _ if n % 2 == 1 => times[n / 2],
        _ => (times[n / 2 - 1] + times[n / 2]) / 2,
    }
}

/// The median of some values: the middle one, or the mean of the middle two for an even count
/// (so two rounds never report the better one as the median); `None` for none.
pub fn median_of(values: &[f64]) -> Option<f64> {
    let mut xs = values.to_vec();
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(xs[n / 2]),
        _ => Some((xs[n / 2 - 1] + xs[n / 2]) / 2.0),
    }
}

/// The `percent`th percentile of `sorted` (in ascending order), by nearest rank: the smallest
/// value that at least `percent`% of the values are at or below (the p99 of 100 values is the
/// 99th smallest); `None` for no value.
pub fn percentile(sorted: &[u64], percent: u32) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    // The rank (from 1) is ⌈n × percent ÷ 100⌉, in whole numbers so that no rounding of a
    // fraction moves it; at least the first value, at most the last.
    let rank = (n * percent as usize).div_ceil(100).clamp(1, n);
    Some(sorted[rank - 1])
}

/// The order the sides of a comparison run in, in round `round` (from 0): `sides` rotated left
/// by `round` places. A B C, then B C A, then C A B, and so on: each side moves one place ahead
/// every round (so each takes every place equally often only when the rounds are a multiple of
/// the sides), and with three sides or more no side runs twice in a row across the turn of a
/// round, so a disturbance that outlasts one measurement falls on two sides, not twice on one
/// (reversing, A B C then C B A, ran the sides at the ends twice in a row and the middle one
/// never). With two sides this is the same as reversing: A B, B A.
pub fn round_order<T: Copy>(sides: &[T], round: usize) -> Vec<T> {
    let mut order = sides.to_vec();
    if !order.is_empty() {
        let by = round % order.len();
        order.rotate_left(by);
    }
    order
}

/// A bar a benchmark figure is held to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bar {
    /// The figure must be at least this (throughput ratios).
    AtLeast(f64),
    /// The figure must be at most this (memory ratios and sizes).
    AtMost(f64),
}

impl Bar {
    /// Whether `figure` meets the bar (never for NaN).
    pub fn met(self, figure: f64) -> bool {
        match self {
            Bar::AtLeast(x) => figure >= x,
            Bar::AtMost(x) => figure <= x,
        }
    }
}

/// The ratio ours ÷ baseline of two medians in the scenario's unit (above 1: ours is higher);
/// NaN when the baseline is not a positive number, so that no bar is met.
pub fn ratio(ours: f64, baseline: f64) -> f64 {
    if baseline > 0.0 && baseline.is_finite() {
        ours / baseline
    } else {
        f64::NAN
    }
}

/// Paired rounds of two sides compared: the geometric mean of the per-round ratios ours ÷
/// baseline, with a 95% Student-t interval for it (see [`paired_ratio`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairedRatio {
    /// How many rounds gave both sides a positive, finite figure.
    pub pairs: usize,
    /// The geometric mean of those rounds' ratios.
    pub geomean: f64,
    /// The interval's lower end: `exp(m − h)`, where `m` is the mean log-ratio and `h` the
    /// interval's half-width on the log scale.
    pub low: f64,
    /// The interval's upper end: `exp(m + h)`.
    pub high: f64,
}

/// Where a [`PairedRatio`]'s interval lies against a bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    /// The whole interval meets the bar.
    Met,
    /// No part of the interval meets it.
    Missed,
    /// The interval straddles the bar: these rounds cannot tell.
    Unresolved,
}

impl PairedRatio {
    /// Where the interval lies against `bar`.
    pub fn against(&self, bar: Bar) -> Resolved {
        match (bar.met(self.low), bar.met(self.high)) {
            (true, true) => Resolved::Met,
            (false, false) => Resolved::Missed,
            _ => Resolved::Unresolved,
        }
    }
}

/// Compares two sides round by round: round `i`'s ratio is `ours[i] ÷ baseline[i]` (both
/// measured in the same round, a few seconds apart, so a machine that drifts between rounds
/// moves both). Returns the geometric mean of the ratios and a 95% Student-t interval for it,
/// taken on the log scale: with `m` the mean of the `n` log-ratios and `s` their sample standard
/// deviation, `exp(m ± t(0.975, n − 1) · s / √n)`. Rounds where either figure is not a positive
/// finite number are left out; `None` with fewer than two pairs left (one pair has no spread to
/// measure).
///
/// Why Student-t and not a bootstrap: a percentile bootstrap of the mean log-ratio treats the
/// few rounds netbench runs as the whole population, and its "95%" interval held the true ratio
/// only about 81% of the time with 4 rounds and 92% with 16. The t interval is exact when the
/// log-ratios are normally distributed and close to it otherwise, at the price of being wide
/// with few pairs (with 2, the half-width is 12.7 standard errors): netbench reports it from
/// four rounds on.
pub fn paired_ratio(ours: &[f64], baseline: &[f64]) -> Option<PairedRatio> {
    let logs: Vec<f64> = ours
        .iter()
        .zip(baseline)
        .filter(|(o, b)| o.is_finite() && b.is_finite() && **o > 0.0 && **b > 0.0)
        .map(|(o, b)| (o / b).ln())
        .collect();
    let n = logs.len();
    if n < 2 {
        return None;
    }
    // Sums of the logs' differences from the first one rather than of the logs themselves: the
    // same mean and spread, but rounds with identical ratios give a spread of exactly zero (and
    // so an interval of exactly one point), and nearly equal ratios lose no precision.
    let first = logs[0];
    let shift = logs.iter().map(|l| l - first).sum::<f64>() / n as f64;
    let mean = first + shift;
    let squares = logs
        .iter()
        .map(|l| (l - first - shift).powi(2))
        .sum::<f64>();
    let sd = (squares / (n - 1) as f64).sqrt();
    let half = t_975(n - 1) * sd / (n as f64).sqrt();
    Some(PairedRatio {
        pairs: n,
        geomean: mean.exp(),
        low: (mean - half).exp(),
        high: (mean + half).exp(),
    })
}

/// Student's t distribution's 97.5th percentile (the factor of a two-sided 95% interval) for
/// `df` degrees of freedom (at least 1).
///
/// Hard-coded rather than computed: the inverse of t's distribution function needs special
/// functions this crate has no other use for, and netbench runs at most a few dozen rounds.
/// Exact to three decimals up to 30; beyond, a `df` between two rows of the usual table gets
/// the row below it (30, 40, 60, 120), whose factor is a little larger than the exact one, so
/// the interval errs on the wide side (by under 1%).
fn t_975(df: usize) -> f64 {
    /// The factors for 1 to 30 degrees of freedom.
    const UP_TO_30: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        1..=30 => UP_TO_30[df - 1],
        31..=39 => UP_TO_30[29],
        40..=59 => 2.021,
        60..=119 => 2.000,
        _ => 1.980,
    }
}

/// What a netbench server process says on the first line of its stdout once it listens:
/// `PORT <port> PID <pid>`.
///
/// The pid is the server's own (`std::process::id()`, Go's `os.Getpid()`), which the driver
/// reads the server's CPU time and memory from: with `NETBENCH_WRAP` set (`perf stat …`,
/// `strace …`) the process the driver started is the wrapper, not the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// The port the server listens on (on 127.0.0.1).
    pub port: u16,
    /// The server's process id; `None` from a server built before it said it (`PORT <port>`
    /// alone), whose process the driver then takes to be the one it started.
    pub pid: Option<u32>,
}

impl Announcement {
    /// The line a server prints (without its newline).
    pub fn line(&self) -> String {
        match self.pid {
            Some(pid) => format!("PORT {} PID {pid}", self.port),
            None => format!("PORT {}", self.port),
        }
    }

    /// Reads a server's first line (a trailing newline allowed): `PORT <port> PID <pid>`, or
    /// `PORT <port>` alone. `None` for anything else.
    pub fn parse(line: &str) -> Option<Announcement> {
        let mut words = line.trim_end_matches(['\n', '\r']).split(' ');
        if words.next()? != "PORT" {
            return None;
        }
        let port = words.next()?.parse().ok()?;
        let pid = match words.next() {
            None => None,
            Some("PID") => Some(words.next()?.parse().ok()?),
            Some(_) => return None,
        };
        words.next().is_none().then_some(Announcement { port, pid })
    }
}

/// The tunable that makes an AMD processor's glibc copy as glibc does there since the fix for
/// its bug 30994, where it lacks that fix: `Ok(None)` where it has it; an error where
/// `tunables` (what `ld.so --list-tunables` printed) does not give both thresholds in hex.
///
/// From Zen 3 on, AMD's `rep movsb` is slower than glibc's vector loop in many cases, and
/// about twenty times slower for some distances between source and destination (a 16 KiB copy
/// whose destination starts 11 bytes after its misaligned source, modulo 4 KiB: 4.7 µs
/// against 0.22 µs on the AMD EPYC host of BENCHMARKS.md). glibc since that fix uses the
/// vector loop on AMD for every copy below its non-temporal threshold (`rep_movsb_threshold =
/// non_temporal_threshold`); Debian 12's glibc 2.36 still uses `rep movsb` there from 2,112
/// bytes (with fast short `rep movsb`) up to a stop threshold. Which copies land on a
/// slow distance is decided by where the heap puts rustls's buffers, so in a process of this
/// benchmark it is chance, and it decides a TLS scenario's rate.
///
/// # Errors
///
/// A message naming the tunable that `tunables` lacks, or whose value is not hex.
pub fn rep_movsb_fix(tunables: &str) -> Result<Option<String>, String> {
    fn value(tunables: &str, name: &str) -> Result<u64, String> {
        tunables
            .lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(": "))
            .and_then(|line| line.split_whitespace().next()?.strip_prefix("0x"))
            .and_then(|hex| u64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| format!("no hex value of {name} in `ld.so --list-tunables`"))
    }
    let threshold = value(tunables, REP_MOVSB_THRESHOLD)?;
    let non_temporal = value(tunables, "glibc.cpu.x86_non_temporal_threshold")?;
    Ok((threshold < non_temporal).then(|| format!("{REP_MOVSB_THRESHOLD}={non_temporal:#x}")))
}

/// The name of glibc's `rep movsb` threshold tunable.
const REP_MOVSB_THRESHOLD: &str = "glibc.cpu.x86_rep_movsb_threshold";

/// `GLIBC_TUNABLES` with `tunable` (a [`rep_movsb_fix`]) added to what it was (`existing`,
/// colon-separated, as glibc reads it); `None` where it names the `rep movsb` threshold
/// already, which is then left as it was set.
pub fn with_tunable(existing: Option<&str>, tunable: &str) -> Option<String> {
    match existing {
        None | Some("") => Some(tunable.to_owned()),
        Some(set) if set.split(':').any(|t| t.starts_with(REP_MOVSB_THRESHOLD)) => None,
        Some(set) => Some(format!("{set}:{tunable}")),
    }
}

/// What one bulk-echo connection sends (`conn`, its number in the run): chunks of `len` bytes
/// (more than 8), one after another, that [`EchoSource::check`] recognises when they come back.
///
/// Each chunk is the connection's own pseudo-random bytes (seeded by `conn`) with the chunk's
/// number in its first 8 bytes, so that no part of the stream equals another: a server that
/// sends a segment twice, skips one, or mixes two connections' bytes is caught, whatever the
/// segment's length. (Until the sixtieth pass each chunk was `b × 31 + conn` for its byte `b`,
/// a pattern that repeats every 256 bytes: a repeated or skipped segment of 256 bytes or a
/// multiple, a page say, passed the check, and repeated bytes counted as echoed.)
#[derive(Debug, Clone)]
pub struct EchoSource {
    chunk: Vec<u8>,
    /// The number of the next chunk.
    next: u64,
}

/// How many bytes at the start of each echo chunk hold its number.
const ECHO_STAMP: usize = 8;

impl EchoSource {
    /// The source of connection `conn`, in chunks of `len` bytes (more than 8).
    pub fn new(conn: usize, len: usize) -> Self {
        assert!(len > ECHO_STAMP, "an echo chunk of {len} bytes");
        let mut rng = Rng::new(0xec40_0000_0000_0000 ^ conn as u64);
        let chunk = (0..len).map(|_| (rng.next_u64() >> 56) as u8).collect();
        EchoSource { chunk, next: 0 }
    }

    /// The next chunk to send.
    pub fn next_chunk(&mut self) -> &[u8] {
        self.chunk[..ECHO_STAMP].copy_from_slice(&self.next.to_be_bytes());
        self.next += 1;
        &self.chunk
    }

    /// A check of what comes back: every chunk this source gives, in order, from the first.
    pub fn check(&self) -> EchoCheck {
        EchoCheck {
            pattern: self.chunk.clone(),
            at: 0,
            chunk: 0,
        }
    }
}

/// Checks that a byte stream is what an [`EchoSource`] sent, however it is cut into reads (the
/// bulk echo's replies: every byte must come back as it was sent, once, in order).
#[derive(Debug, Clone)]
pub struct EchoCheck {
    /// A chunk's bytes (its first 8 are the stamp's place).
    pattern: Vec<u8>,
    /// Where in the chunk the next byte falls.
    at: usize,
    /// The number of the chunk the next byte belongs to.
    chunk: u64,
}

impl EchoCheck {
    /// Whether `got`, the next bytes of the stream, continue it. After a `false` the position is
    /// unspecified.
    pub fn check(&mut self, mut got: &[u8]) -> bool {
        while !got.is_empty() {
            let n = (self.pattern.len() - self.at).min(got.len());
            let (piece, rest) = got.split_at(n);
            // The part of the chunk's number in this piece, then the chunk's own bytes.
            let stamped = ECHO_STAMP.saturating_sub(self.at).min(n);
            if stamped > 0 {
                let stamp = self.chunk.to_be_bytes();
                if piece[..stamped] != stamp[self.at..self.at + stamped] {
                    return false;
                }
            }
            if piece[stamped..] != self.pattern[self.at + stamped..self.at + n] {
                return false;
            }
            self.at += n;
            if self.at == self.pattern.len() {
                self.at = 0;
                self.chunk += 1;
            }
            got = rest;
        }
        true
    }
}

/// What a UDP echo client makes of the datagrams it receives: each datagram it sends starts with
/// its sequence number (8 bytes, big-endian), and it waits for that datagram's echo before it
/// sends the next, or gives up on it ([`UdpEchoCheck::lost`]).
#[derive(Debug, Clone, Default)]
pub struct UdpEchoCheck {
    /// The datagrams given up on whose echo has not come since.
    lost: Vec<u64>,
}

impl UdpEchoCheck {
    /// A check with no datagram given up on.
    pub fn new() -> Self {
        UdpEchoCheck::default()
    }

    /// Notes that the echo of datagram `seq` did not come in time: it may still come, once.
    pub fn lost(&mut self, seq: u64) {
        self.lost.push(seq);
    }

    /// Judges `got`, a datagram that arrived while the client waited for the echo of `sent` (at
    /// least 8 bytes; every datagram the client sends has its length): `Ok(true)` when it is
    /// that echo, `Ok(false)` when it is the late echo of a datagram given up on, and an error
    /// for anything else (a byte changed, a datagram cut short, an echo sent twice).
    pub fn check(&mut self, sent: &[u8], got: &[u8]) -> Result<bool, String> {
        if got == sent {
            return Ok(true);
        }
        // Every datagram has the same bytes after its number: a late echo differs from `sent`
        // in its number alone, and that number is one of those given up on (once).
        if got.len() == sent.len() && got[8..] == sent[8..] {
            let seq = u64::from_be_bytes(got[..8].try_into().expect("8 bytes"));
            if let Some(i) = self.lost.iter().position(|l| *l == seq) {
                self.lost.swap_remove(i);
                return Ok(false);
            }
            return Err(format!(
                "an echo of datagram {seq}, which had its echo already or was never sent"
            ));
        }
        Err(format!(
            "a datagram of {} bytes that is no echo of the {} bytes sent",
            got.len(),
            sent.len()
        ))
    }
}

/// Ends a conversation of requests and answers once every request sent has had its answer: shuts
/// the writing side down (a server under test closes when its client leaves) and reads until the
/// server closes, within `limit`.
///
/// Fails when a byte arrives, an answer nobody asked for: a server that answers twice would
/// otherwise have its extra answer taken for the next request's, and be counted as faster than
/// it is. Also fails when the server does not close within `limit`, or on an I/O error.
pub async fn expect_no_more<S>(stream: &mut S, limit: Duration) -> anyhow::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let check = async {
        stream.shutdown().await?;
        let mut extra = [0u8; 64];
        let n = stream.read(&mut extra).await?;
        anyhow::ensure!(
            n == 0,
            "the server sent bytes after the answer to the last request: {:?}",
            String::from_utf8_lossy(&extra[..n])
        );
        Ok(())
    };
    match tokio::time::timeout(limit, check).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("the server did not close within {limit:?} after the client left"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What glibc 2.36's `ld.so --list-tunables` printed on the AMD EPYC host (the lines that
    /// matter, and one around them).
    const GLIBC_236_AMD: &str = "\
glibc.cpu.x86_rep_stosb_threshold: 0x800 (min: 0x1, max: 0xffffffffffffffff)
glibc.cpu.x86_rep_movsb_threshold: 0x840 (min: 0x200, max: 0xffffffffffffffff)
glibc.cpu.x86_non_temporal_threshold: 0xf000000 (min: 0x4040, max: 0xfffffffffffffff)
";

    #[test]
    fn the_order_of_the_sides_rotates_every_round() {
        // netbench's pipeline scenarios: raw, tuned, go, ours.
        let rounds: Vec<Vec<char>> = (0..4)
            .map(|r| round_order(&['r', 't', 'g', 'o'], r))
            .collect();
        assert_eq!(
            rounds,
            [
                ['r', 't', 'g', 'o'],
                ['t', 'g', 'o', 'r'],
                ['g', 'o', 'r', 't'],
                ['o', 'r', 't', 'g']
            ]
        );
        // Every side in every place once over four rounds; none twice in a row at a turn.
        for place in 0..4 {
            let mut at: Vec<char> = rounds.iter().map(|r| r[place]).collect();
            at.sort_unstable();
            assert_eq!(at, ['g', 'o', 'r', 't'], "place {place}");
        }
        for turn in rounds.windows(2) {
            assert_ne!(turn[0][3], turn[1][0], "{turn:?}");
        }
        // Two sides: baseline and ours swap which goes first every round.
        assert_eq!(round_order(&['r', 'o'], 0), ['r', 'o']);
        assert_eq!(round_order(&['r', 'o'], 1), ['o', 'r']);
        assert_eq!(round_order(&['r', 'o'], 2), ['r', 'o']);
        assert_eq!(round_order::<char>(&[], 3), []);
    }

    #[test]
    fn a_glibc_before_the_fix_gets_the_vector_loop() {
        assert_eq!(
            rep_movsb_fix(GLIBC_236_AMD),
            Ok(Some(
                "glibc.cpu.x86_rep_movsb_threshold=0xf000000".to_owned()
            ))
        );
    }

    #[test]
    fn a_fixed_glibc_changes_nothing_and_unreadable_tunables_say_so() {
        // glibc since the fix: the threshold is the non-temporal one already.
        let fixed = GLIBC_236_AMD.replace("threshold: 0x840", "threshold: 0xf000000");
        assert_eq!(rep_movsb_fix(&fixed), Ok(None));
        let missing = rep_movsb_fix("").unwrap_err();
        assert!(missing.contains("x86_rep_movsb_threshold"), "{missing}");
        let decimal = rep_movsb_fix(&GLIBC_236_AMD.replace("0xf000000 (", "251658240 ("));
        assert!(decimal.unwrap_err().contains("x86_non_temporal_threshold"));
    }

    #[test]
    fn the_tunable_joins_those_already_set_unless_they_set_it() {
        let fix = "glibc.cpu.x86_rep_movsb_threshold=0xf000000";
        assert_eq!(with_tunable(None, fix).as_deref(), Some(fix));
        assert_eq!(with_tunable(Some(""), fix).as_deref(), Some(fix));
        assert_eq!(
            with_tunable(Some("glibc.malloc.check=3"), fix).as_deref(),
            Some("glibc.malloc.check=3:glibc.cpu.x86_rep_movsb_threshold=0xf000000")
        );
        let chosen = "glibc.malloc.check=3:glibc.cpu.x86_rep_movsb_threshold=0x840";
        assert_eq!(with_tunable(Some(chosen), fix), None);
    }

    #[test]
    fn ratios_are_ours_over_the_baseline_and_bars_hold_them() {
        // Throughput: 2,000 requests/s against 500 is 4x, which meets ">= 4" and not ">= 4.1".
        assert_eq!(ratio(2000.0, 500.0), 4.0);
        assert!(Bar::AtLeast(4.0).met(ratio(2000.0, 500.0)));
        assert!(!Bar::AtLeast(4.1).met(ratio(2000.0, 500.0)));
        // Memory: 2,000 bytes against 9,000 is 0.22, under "<= 1.25"; an absolute bar.
        assert!(Bar::AtMost(1.25).met(ratio(2000.0, 9000.0)));
        assert!(!Bar::AtMost(1.25).met(ratio(9000.0, 2000.0)));
        assert!(Bar::AtMost(4096.0).met(4096.0) && !Bar::AtMost(4096.0).met(4097.0));
        // A baseline that measured nothing meets no bar.
        for baseline in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(ratio(1.0, baseline).is_nan());
            assert!(!Bar::AtLeast(0.0).met(ratio(1.0, baseline)));
            assert!(!Bar::AtMost(1e9).met(ratio(1.0, baseline)));
        }
    }

    #[test]
    fn a_constant_ratio_has_no_spread() {
        // Rounds eight times apart (a machine whose speed drifts), ours twice the baseline in
        // each: the drift cancels within each round, and the interval is the one point.
        let p = paired_ratio(&[200.0, 100.0, 50.0, 400.0], &[100.0, 50.0, 25.0, 200.0]).unwrap();
        assert_eq!(p.pairs, 4);
        assert!((p.geomean - 2.0).abs() < 1e-12, "{p:?}");
        assert_eq!(p.low, p.geomean, "{p:?}");
        assert_eq!(p.high, p.geomean, "{p:?}");
        assert_eq!(p.against(Bar::AtLeast(1.0)), Resolved::Met);
        assert_eq!(p.against(Bar::AtLeast(2.5)), Resolved::Missed);
        assert_eq!(p.against(Bar::AtMost(1.25)), Resolved::Missed);
    }

    #[test]
    fn a_bar_at_an_end_of_the_interval_is_met_by_that_end() {
        let interval = |low, high| PairedRatio {
            pairs: 4,
            geomean: f64::sqrt(low * high),
            low,
            high,
        };
        // ">= 1.0": an interval from exactly 1.0 meets it; one up to exactly 1.0 straddles it
        // (its top meets it, the rest does not); one wholly below misses it.
        assert_eq!(interval(1.0, 1.2).against(Bar::AtLeast(1.0)), Resolved::Met);
        assert_eq!(
            interval(0.9, 1.0).against(Bar::AtLeast(1.0)),
            Resolved::Unresolved
        );
        assert_eq!(
            interval(0.8, 0.999).against(Bar::AtLeast(1.0)),
            Resolved::Missed
        );
        // "<= 1.25" (memory): up to exactly 1.25 meets it; from exactly 1.25 straddles it.
        assert_eq!(
            interval(1.0, 1.25).against(Bar::AtMost(1.25)),
            Resolved::Met
        );
        assert_eq!(
            interval(1.25, 1.5).against(Bar::AtMost(1.25)),
            Resolved::Unresolved
        );
        assert_eq!(
            interval(1.26, 1.5).against(Bar::AtMost(1.25)),
            Resolved::Missed
        );
        // A paired run whose every round is exactly at the bar: a one-point interval on it.
        let p = paired_ratio(&[95.0, 190.0, 47.5, 9.5], &[100.0, 200.0, 50.0, 10.0]).unwrap();
        assert!(
            near(p.low, 0.95, 1e-12) && near(p.high, 0.95, 1e-12),
            "{p:?}"
        );
    }

    /// Whether `got` is within `tolerance` of `want`, relatively.
    fn near(got: f64, want: f64, tolerance: f64) -> bool {
        ((got - want) / want).abs() < tolerance
    }

    #[test]
    fn the_interval_is_students_t_on_the_log_ratios() {
        // Ratios 1, 2, 4, 8. In units of ln 2 the log-ratios are 0, 1, 2, 3: mean m = 1.5,
        // squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, s = √(5 / 3) = 1.29099,
        // standard error s / √4 = 0.645497, t(0.975, 3) = 3.182, half-width h = 2.053972.
        // Geometric mean 2^1.5 = 2.828427; interval 2^(1.5 − h) = 2^−0.553972 = 0.681142 to
        // 2^(1.5 + h) = 2^3.553972 = 11.744979.
        let ours = [100.0, 200.0, 400.0, 800.0];
        let p = paired_ratio(&ours, &[100.0; 4]).unwrap();
        assert_eq!(p.pairs, 4);
        assert!(near(p.geomean, 2.828_427, 1e-6), "{p:?}");
        assert!(near(p.low, 0.681_142, 1e-5), "{p:?}");
        assert!(near(p.high, 11.744_979, 1e-6), "{p:?}");
        // The order of the rounds does not matter, only the pairs.
        let shuffled = paired_ratio(&[800.0, 100.0, 400.0, 200.0], &[100.0; 4]).unwrap();
        assert!(near(shuffled.low, p.low, 1e-12) && near(shuffled.high, p.high, 1e-12));
        assert_eq!(p.against(Bar::AtLeast(1.0)), Resolved::Unresolved);
    }

    #[test]
    fn two_pairs_give_the_widest_factor() {
        // Ratios 1 and 4: log-ratios 0 and 2 ln 2, mean ln 2, s = √2 · ln 2, standard error
        // s / √2 = ln 2, t(0.975, 1) = 12.706: the interval is 2^(1 ∓ 12.706), 2^−11.706 =
        // 0.000299325 to 2^13.706 = 13363.40, around a geometric mean of 2.
        let p = paired_ratio(&[100.0, 400.0], &[100.0, 100.0]).unwrap();
        assert_eq!(p.pairs, 2);
        assert!(near(p.geomean, 2.0, 1e-12), "{p:?}");
        assert!(near(p.low, 2f64.powf(1.0 - 12.706), 1e-12), "{p:?}");
        assert!(near(p.low, 0.000_299_325, 1e-5), "{p:?}");
        assert!(near(p.high, 13_363.40, 1e-6), "{p:?}");
    }

    #[test]
    fn the_interval_holds_the_geometric_mean_and_narrows_with_more_rounds() {
        // Ratios 0.8, 1.25, 0.9, 1.1, 1.0, 0.95: geometric mean 0.9945.
        let ours = [80.0, 125.0, 90.0, 110.0, 100.0, 95.0];
        let base = [100.0; 6];
        let p = paired_ratio(&ours, &base).unwrap();
        let expected = (ours.iter().map(|o| (o / 100.0_f64).ln()).sum::<f64>() / 6.0).exp();
        assert!((p.geomean - expected).abs() < 1e-12);
        assert!(p.low < p.geomean && p.geomean < p.high, "{p:?}");
        // Symmetric on the log scale.
        assert!(near(p.geomean / p.low, p.high / p.geomean, 1e-12), "{p:?}");
        assert_eq!(p.against(Bar::AtLeast(1.0)), Resolved::Unresolved);
        // The same figures twice over: the same mean, a smaller factor and standard error.
        let twice = paired_ratio(&[ours, ours].concat(), &[base, base].concat()).unwrap();
        assert!(near(twice.geomean, p.geomean, 1e-12));
        assert!(p.low < twice.low && twice.high < p.high, "{p:?} {twice:?}");
    }

    #[test]
    fn the_t_factors_shrink_towards_the_normal_one() {
        assert_eq!(t_975(1), 12.706);
        assert_eq!(t_975(3), 3.182);
        assert_eq!(t_975(30), 2.042);
        // Between rows of the table, the row below: never narrower than the exact interval.
        assert_eq!(t_975(35), 2.042);
        assert_eq!(t_975(40), 2.021);
        assert_eq!(t_975(1000), 1.980);
        for df in 1..200 {
            assert!(t_975(df + 1) <= t_975(df), "df {df}");
            assert!(t_975(df) > 1.96, "df {df}");
        }
    }

    #[test]
    fn rounds_without_two_figures_are_left_out() {
        let p = paired_ratio(&[2.0, 0.0, 3.0, f64::NAN], &[1.0, 1.0, 1.5, 1.0]).unwrap();
        assert_eq!(p.pairs, 2);
        assert!((p.geomean - 2.0).abs() < 1e-12);
        assert_eq!(paired_ratio(&[2.0, 0.0], &[1.0, 1.0]), None);
        assert_eq!(paired_ratio(&[], &[]), None);
        // Unequal lengths: only the rounds both have.
        assert_eq!(
            paired_ratio(&[2.0, 4.0, 9.0], &[1.0, 2.0]).unwrap().pairs,
            2
        );
    }

    #[test]
    fn a_server_announces_its_port_and_pid() {
        let both = Announcement {
            port: 41_234,
            pid: Some(5_678),
        };
        assert_eq!(both.line(), "PORT 41234 PID 5678");
        assert_eq!(Announcement::parse("PORT 41234 PID 5678\n"), Some(both));
        assert_eq!(Announcement::parse(&both.line()), Some(both));
        // A server built before the pid was added: the driver falls back to its child's pid.
        assert_eq!(
            Announcement::parse("PORT 41234\n"),
            Some(Announcement {
                port: 41_234,
                pid: None
            })
        );
        for bad in [
            "",
            "\n",
            "PORT\n",
            "PORT x\n",
            "PORT 70000\n",
            "PORT 1 PID\n",
            "PORT 1 PID -3\n",
            "PORT 1 PID 2 3\n",
            "PORT 1 2\n",
            "port 1\n",
            "listening on 1\n",
        ] {
            assert_eq!(Announcement::parse(bad), None, "{bad:?}");
        }
    }

    /// The first `chunks` chunks `source` sends, one after another.
    fn sent(source: &mut EchoSource, chunks: usize) -> Vec<u8> {
        (0..chunks)
            .flat_map(|_| source.next_chunk().to_vec())
            .collect()
    }

    #[test]
    fn the_echo_passes_however_it_is_cut() {
        let mut source = EchoSource::new(3, 1000);
        let stream = sent(&mut source, 5);
        for cut in [1, 3, 7, 8, 9, 10, 13, 999, 1000, 1001, 5000] {
            let mut check = source.check();
            for piece in stream.chunks(cut) {
                assert!(check.check(piece), "cut {cut}");
            }
        }
    }

    #[test]
    fn a_wrong_byte_anywhere_fails() {
        let mut source = EchoSource::new(0, 100);
        let stream = sent(&mut source, 3);
        for wrong in 0..stream.len() {
            let mut bad = stream.clone();
            bad[wrong] ^= 1;
            let mut check = source.check();
            assert!(
                !bad.chunks(4).all(|piece| check.check(piece)),
                "byte {wrong}"
            );
        }
        // A server that answers with zeros of the right length is wrong too.
        assert!(!source.check().check(&[0; 20]));
    }

    #[test]
    fn an_echo_that_repeats_or_skips_a_segment_fails() {
        // netbench's bulk echo sends 64 KiB chunks. A server that sends a segment of the stream
        // twice (a buffer written again after a partial write, say), or skips one, must fail:
        // a repeated segment would otherwise count as echoed bytes, and score. The segments are
        // of the sizes reads and writes come in (256 bytes, a page, a whole chunk).
        const CHUNK: usize = 64 * 1024;
        let mut source = EchoSource::new(0, CHUNK);
        let stream = sent(&mut source, 4);
        for len in [256, 4096, 16 * 1024, CHUNK] {
            for at in [0, 10_000, CHUNK, CHUNK + 4096] {
                let twice = [&stream[..at + len], &stream[at..]].concat();
                let skipped = [&stream[..at], &stream[at + len..]].concat();
                for (what, bad) in [("repeated", twice), ("skipped", skipped)] {
                    let mut check = source.check();
                    assert!(
                        !bad.chunks(1500).all(|piece| check.check(piece)),
                        "{len} bytes at {at} {what} went unseen"
                    );
                }
            }
        }
    }

    #[test]
    fn another_connections_echo_fails() {
        // 16 connections echo at once: bytes of one that reach another are wrong, from any
        // point of its stream.
        const CHUNK: usize = 64 * 1024;
        let mine = EchoSource::new(0, CHUNK);
        let theirs = sent(&mut EchoSource::new(1, CHUNK), 2);
        let own = sent(&mut mine.clone(), 1);
        for skip in [0, 1, 223, 256, 4096] {
            let mut check = mine.check();
            assert!(check.check(&own[..skip]));
            assert!(
                !check.check(&theirs[..4096]),
                "connection 1's bytes taken for 0's after {skip} bytes"
            );
        }
    }

    #[test]
    fn a_percentile_is_the_value_at_its_nearest_rank() {
        // 1 to 100: the p99 is the 99th value, not the largest; the p50 the 50th.
        let hundred: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&hundred, 99), Some(99));
        assert_eq!(percentile(&hundred, 50), Some(50));
        assert_eq!(percentile(&hundred, 100), Some(100));
        // 1 to 1,000: 990 values are at or below the p99.
        let thousand: Vec<u64> = (1..=1000).collect();
        assert_eq!(percentile(&thousand, 99), Some(990));
        // 10, 20, 30, 40: half the values are at or below 20.
        assert_eq!(percentile(&[10, 20, 30, 40], 50), Some(20));
        // Odd counts: the middle value; one value is every percentile; none, none.
        assert_eq!(percentile(&[10, 20, 30], 50), Some(20));
        assert_eq!(percentile(&[7], 50), Some(7));
        assert_eq!(percentile(&[7], 99), Some(7));
        assert_eq!(percentile(&[], 50), None);
        // 250 values: the p99 is the 248th (247.5 rounded up).
        let odd: Vec<u64> = (1..=250).collect();
        assert_eq!(percentile(&odd, 99), Some(248));
    }

    /// Datagram `seq` of a UDP client: its number, then 56 bytes 0x5a.
    fn datagram(seq: u64) -> Vec<u8> {
        let mut d = vec![0x5a; 64];
        d[..8].copy_from_slice(&seq.to_be_bytes());
        d
    }

    #[test]
    fn a_udp_echo_is_the_datagram_or_the_late_echo_of_one_given_up_on() {
        let mut check = UdpEchoCheck::new();
        assert_eq!(check.check(&datagram(0), &datagram(0)), Ok(true));
        // Datagram 1's echo is late: given up on, then taken for what it is once it comes.
        check.lost(1);
        assert_eq!(check.check(&datagram(2), &datagram(1)), Ok(false));
        assert_eq!(check.check(&datagram(2), &datagram(2)), Ok(true));
    }

    #[test]
    fn a_garbled_cut_or_repeated_udp_echo_fails() {
        let mut check = UdpEchoCheck::new();
        check.lost(1);
        let sent = datagram(3);
        // A byte changed, in the payload or in the number; the datagram cut short.
        for at in [0, 5, 7, 8, 63] {
            let mut bad = sent.clone();
            bad[at] ^= 1;
            assert!(check.check(&sent, &bad).is_err(), "byte {at}");
        }
        for len in [0, 4, 8, 63] {
            assert!(check.check(&sent, &sent[..len]).is_err(), "{len} bytes");
        }
        // An echo of a datagram that had its echo already (a server that answers twice), and
        // of one the client never sent.
        assert!(check.check(&sent, &datagram(2)).is_err());
        assert!(check.check(&sent, &datagram(9)).is_err());
        // The late echo of datagram 1 counts once.
        assert_eq!(check.check(&sent, &datagram(1)), Ok(false));
        assert!(check.check(&sent, &datagram(1)).is_err());
        assert_eq!(check.check(&sent, &sent), Ok(true));
    }

    fn ms(list: &[u64]) -> Vec<Duration> {
        list.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn the_median_of_an_odd_count_is_the_middle_value() {
        assert_eq!(median(&mut ms(&[30, 10, 20])), Duration::from_millis(20));
        assert_eq!(median_of(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut []), Duration::ZERO);
        assert_eq!(median_of(&[]), None);
    }

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        // With two rounds the median must not be the better round.
        assert_eq!(median(&mut ms(&[10, 30])), Duration::from_millis(20));
        assert_eq!(
            median(&mut ms(&[40, 10, 30, 20])),
            Duration::from_millis(25)
        );
        assert_eq!(median_of(&[100.0, 300.0]), Some(200.0));
        assert_eq!(median_of(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    /// A server end that answers what `client` sent with `answer`, then waits for the client to
    /// leave and closes.
    async fn answering(mut server: tokio::io::DuplexStream, answer: &'static [u8]) {
        let mut request = [0u8; 6];
        server.read_exact(&mut request).await.expect("request");
        server.write_all(answer).await.expect("answer");
        let mut rest = Vec::new();
        server.read_to_end(&mut rest).await.expect("client leaves");
        assert!(rest.is_empty(), "{rest:?}");
    }

    #[tokio::test]
    async fn a_conversation_that_ends_after_its_last_answer_passes() {
        let (client, server) = tokio::io::duplex(1024);
        let serving = tokio::spawn(answering(server, b"Hello, Alice!\n"));
        let mut client = tokio::io::BufReader::new(client);
        client.write_all(b"Alice\n").await.unwrap();
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut client, &mut line)
            .await
            .unwrap();
        assert_eq!(line, "Hello, Alice!\n");
        expect_no_more(&mut client, Duration::from_secs(10))
            .await
            .unwrap();
        drop(client);
        serving.await.unwrap();
    }

    const TWICE: &[u8] = b"Hello, Alice!\nHello, Alice!\n";

    #[tokio::test]
    async fn an_answer_sent_twice_is_caught_in_the_read_buffer() {
        // As in netbench's ping-pong client: the second answer sits in the client's buffer.
        let (client, server) = tokio::io::duplex(1024);
        let serving = tokio::spawn(answering(server, TWICE));
        let mut client = tokio::io::BufReader::new(client);
        client.write_all(b"Alice\n").await.unwrap();
        let mut line = String::new();
        tokio::io::AsyncBufReadExt::read_line(&mut client, &mut line)
            .await
            .unwrap();
        let err = expect_no_more(&mut client, Duration::from_secs(10))
            .await
            .expect_err("a surplus answer");
        assert!(err.to_string().contains("Hello, Alice!"), "{err:#}");
        drop(client);
        serving.await.unwrap();
    }

    #[tokio::test]
    async fn an_answer_sent_twice_is_caught_on_the_wire() {
        // As in netbench's pipelining client, which reads exactly the answers' length.
        let (mut client, server) = tokio::io::duplex(1024);
        let serving = tokio::spawn(answering(server, TWICE));
        client.write_all(b"Alice\n").await.unwrap();
        let mut first = [0u8; 14];
        client.read_exact(&mut first).await.unwrap();
        let err = expect_no_more(&mut client, Duration::from_secs(10))
            .await
            .expect_err("a surplus answer");
        assert!(err.to_string().contains("Hello, Alice!"), "{err:#}");
        drop(client);
        serving.await.unwrap();
    }

    #[tokio::test]
    async fn a_server_that_never_closes_is_caught() {
        let (mut client, _server) = tokio::io::duplex(1024);
        let err = expect_no_more(&mut client, Duration::from_millis(50))
            .await
            .expect_err("no close");
        assert!(err.to_string().contains("did not close"), "{err:#}");
    }
}
