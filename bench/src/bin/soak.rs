//! The load and the measurements of `cargo xtask soak`: holds many ping-pong connections to a
//! running `sockets-server` for a fixed time, and watches that server's memory and descriptors
//! through `/proc/PID` (Linux).
//!
//! ```text
//! soak --addr HOST:PORT --conns C --secs S --server-pid PID
//! ```
//!
//! 1. Samples the server (`baseline`), then opens `C` connections, at most 64 being set up at
//!    once, each within 10 s, and reads each greeting.
//! 2. Samples the server (`start`), then every connection, concurrently, sends a line
//!    (`c<conn>r<seq>`, unique per request), waits for exactly `Hello, c<conn>r<seq>!`, thinks
//!    [`THINK`] and goes again, until `S` seconds have passed. A request that fails (a wrong
//!    answer, a reset, the server closing, no answer within [`ANSWER_LIMIT`]) is an error; the
//!    connection is then replaced by a new one, so that `C` stay open.
//! 3. Samples the server every `S`/10 seconds (the fifth is `middle`, the tenth `end`, taken
//!    while all connections are still open), closes every connection, and samples once more
//!    (`after`) when the server's descriptor count is back to the baseline or 10 s have
//!    passed.
//!
//! Progress goes to stderr. The report goes to stdout as lines of a word then `key=value`
//! pairs, for `cargo xtask soak` to judge (see `xtask/src/soak.rs`). Everything is bounded:
//! time (the window, plus per-step limits), requests per connection, and error messages shown.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// The prompt `sockets-server` greets each connection with (without its newline).
const GREETING: &str = "Please enter your name";

/// How long each connection waits after an answer before its next request.
const THINK: Duration = Duration::from_millis(100);
/// How long a request may wait for its answer before it counts as an error.
const ANSWER_LIMIT: Duration = Duration::from_secs(5);
/// How long connecting and reading the greeting may take.
const SETUP_LIMIT: Duration = Duration::from_secs(10);
/// How many connections are being set up at once, at most (a burst of hundreds of connects
/// overflows the listen queue).
const CONNECTING: usize = 64;
/// How long a connection waits before replacing a connection that failed to set up.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The most requests one connection sends in one run (a count bound besides the time one).
const MAX_REQUESTS: u64 = 100_000_000;
/// The longest answer read; anything longer is an error.
const ANSWER_MAX: u64 = 256;
/// How many error messages are printed; the rest are only counted.
const ERRORS_SHOWN: u64 = 20;
/// How many samples the window is divided into (the middle one is `SAMPLES / 2`).
const SAMPLES: u32 = 10;
/// How long to wait for the server to release the closed connections' descriptors.
const RELEASE_LIMIT: Duration = Duration::from_secs(10);
/// Descriptors this process needs besides one per connection.
const SPARE_FDS: u64 = 32;
/// The most connections one run may hold (loopback has about 28,000 ephemeral ports).
const MAX_CONNS: usize = 20_000;

fn main() -> Result<()> {
    let args = Args::parse(std::env::args().skip(1))?;
    let limit = soft_fd_limit().context("reading /proc/self/limits")?;
    ensure!(
        limit >= args.conns as u64 + SPARE_FDS,
        "{} connections need {} descriptors, but the soft limit of this process is {limit}: \
         raise it (`ulimit -n`) or use fewer connections",
        args.conns,
        args.conns as u64 + SPARE_FDS
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(soak(args))
}

/// The command line.
#[derive(Debug, Clone, Copy)]
struct Args {
    addr: SocketAddr,
    conns: usize,
    window: Duration,
    server: u32,
}

impl Args {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Args> {
        const USAGE: &str = "usage: soak --addr HOST:PORT --conns C --secs S --server-pid PID";
        let (mut addr, mut conns, mut secs, mut server) = (None, None, None, None);
        while let Some(arg) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{arg} needs a value ({USAGE})"))?;
            let bad = || format!("{arg}: invalid value {value:?}");
            match arg.as_str() {
                "--addr" => addr = Some(value.parse::<SocketAddr>().with_context(bad)?),
                "--conns" => conns = Some(value.parse::<usize>().with_context(bad)?),
                "--secs" => secs = Some(value.parse::<f64>().with_context(bad)?),
                "--server-pid" => server = Some(value.parse::<u32>().with_context(bad)?),
                _ => bail!("unknown argument {arg:?} ({USAGE})"),
            }
        }
        let (Some(addr), Some(conns), Some(secs), Some(server)) = (addr, conns, secs, server)
        else {
            bail!("missing argument ({USAGE})");
        };
        ensure!(
            (1..=MAX_CONNS).contains(&conns),
            "--conns must be 1 to {MAX_CONNS}"
        );
        ensure!(
            secs.is_finite() && (1.0..=7.0 * 86_400.0).contains(&secs),
            "--secs must be 1 to 604800"
        );
        Ok(Args {
            addr,
            conns,
            window: Duration::from_secs_f64(secs),
            server,
        })
    }
}

async fn soak(args: Args) -> Result<()> {
    let probe = Probe { pid: args.server };
    let stats = Arc::new(Stats::default());
    let mut samples = vec![probe.sample("baseline", Duration::ZERO)?];

    eprintln!(
        "soak: opening {} connections to {} (server pid {})",
        args.conns, args.addr, args.server
    );
    let opened = Instant::now();
    let conns = open_all(args.addr, args.conns).await?;
    eprintln!(
        "soak: {} connections greeted in {:.1} s; ping-pong for {:.0} s, {} ms think time",
        conns.len(),
        opened.elapsed().as_secs_f64(),
        args.window.as_secs_f64(),
        THINK.as_millis()
    );

    let start = Instant::now();
    let end = start + args.window;
    samples.push(probe.sample("start", Duration::ZERO)?);
    let mut tasks = JoinSet::new();
    for (id, conn) in conns.into_iter().enumerate() {
        let stats = Arc::clone(&stats);
        tasks.spawn(keep_talking(id, conn, args.addr, start, end, stats));
    }

    for k in 1..=SAMPLES {
        let at = args.window * k / SAMPLES;
        tokio::time::sleep_until(start + at).await;
        let label = if k == SAMPLES / 2 {
            "middle"
        } else if k == SAMPLES {
            "end"
        } else {
            "t"
        };
        let sample = probe.sample(label, at)?;
        eprintln!(
            "soak: {:>7.1} s  {:>11} requests  {} errors  server RSS {} KiB, {} fds",
            at.as_secs_f64(),
            stats.requests.load(Ordering::Relaxed),
            stats.errors(),
            sample.rss_kib,
            sample.fds
        );
        samples.push(sample);
    }

    // Every connection stops within one answer limit plus one think time of the end; each
    // hands its connection back, and all of them are closed together below.
    let mut open = Vec::with_capacity(args.conns);
    let stop_by = Instant::now() + ANSWER_LIMIT + THINK + SETUP_LIMIT;
    while let Ok(Some(joined)) = tokio::time::timeout_at(stop_by, tasks.join_next()).await {
        if let Some(conn) = joined.context("a connection task panicked")? {
            open.push(conn);
        }
    }
    ensure!(
        tasks.is_empty(),
        "{} connections did not stop in time",
        tasks.len()
    );
    let held = open.len();
    drop(open);
    samples.push(release_sample(&probe, samples[0].fds, start).await?);

    eprintln!("soak: closed {held} connections");
    print!("{}", report(&args, &stats, &samples));
    Ok(())
}

/// Opens `count` greeted connections, at most [`CONNECTING`] at a time.
async fn open_all(addr: SocketAddr, count: usize) -> Result<Vec<Conn>> {
    let mut conns = Vec::with_capacity(count);
    let mut pending = JoinSet::new();
    let mut started = 0;
    while conns.len() < count {
        while started < count && pending.len() < CONNECTING {
            started += 1;
            pending.spawn(Conn::open(addr));
        }
        let opened = pending.join_next().await.context("no connection pending")?;
        conns.push(
            opened
                .context("a connect task panicked")?
                .with_context(|| format!("setting up connection {} of {count}", conns.len()))?,
        );
    }
    Ok(conns)
}

/// One client connection to the server, greeted.
#[derive(Debug)]
struct Conn(BufReader<TcpStream>);

impl Conn {
    /// Connects and reads the greeting, within [`SETUP_LIMIT`].
    async fn open(addr: SocketAddr) -> Result<Conn> {
        let setup = async {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let mut conn = Conn(BufReader::new(stream));
            let mut line = String::new();
            conn.read_answer(&mut line).await?;
            ensure!(
                line.strip_suffix('\n') == Some(GREETING),
                "unexpected greeting {line:?}"
            );
            Ok(conn)
        };
        tokio::time::timeout(SETUP_LIMIT, setup)
            .await
            .context("connecting and reading the greeting took over 10 s")?
    }

    /// Reads one line of at most [`ANSWER_MAX`] bytes into `line` (cleared first).
    async fn read_answer(&mut self, line: &mut String) -> std::io::Result<()> {
        line.clear();
        let n = (&mut self.0).take(ANSWER_MAX).read_line(line).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
}

/// One connection's life during the window: request, answer, think, again; a failed request
/// is counted and the connection replaced. Returns the connection open at the end, if any.
async fn keep_talking(
    id: usize,
    conn: Conn,
    addr: SocketAddr,
    start: Instant,
    end: Instant,
    stats: Arc<Stats>,
) -> Option<Conn> {
    let mut conn = Some(conn);
    let (mut request, mut expected, mut answer) = (String::new(), String::new(), String::new());
    // Spread the connections' first requests over one think time, so they do not all fire in
    // the same instant.
    let offset = THINK * u32::try_from(id % 1000).unwrap_or(0) / 1000;
    tokio::time::sleep_until((start + offset).min(end)).await;
    for seq in 0..MAX_REQUESTS {
        if Instant::now() >= end {
            break;
        }
        let Some(current) = conn.as_mut() else {
            match Conn::open(addr).await {
                Ok(fresh) => conn = Some(fresh),
                Err(e) => {
                    stats.error(Kind::Setup, id, start, &format!("{e:#}"));
                    tokio::time::sleep_until((Instant::now() + RETRY_PAUSE).min(end)).await;
                }
            }
            continue;
        };
        request.clear();
        expected.clear();
        let _ = writeln!(request, "c{id}r{seq}");
        let _ = writeln!(expected, "Hello, c{id}r{seq}!");
        let sent = Instant::now();
        let exchange = async {
            current.0.get_mut().write_all(request.as_bytes()).await?;
            current.read_answer(&mut answer).await
        };
        let failed = match tokio::time::timeout(ANSWER_LIMIT, exchange).await {
            Ok(Ok(())) if answer == expected => None,
            Ok(Ok(())) => Some((Kind::Answer, format!("sent {request:?}, got {answer:?}"))),
            Ok(Err(e)) => Some((Kind::of(&e), e.to_string())),
            Err(_) => Some((Kind::Timeout, format!("no answer to {request:?} in 5 s"))),
        };
        match failed {
            None => stats.answered(sent.elapsed()),
            Some((kind, what)) => {
                stats.error(kind, id, start, &what);
                conn = None;
            }
        }
        tokio::time::sleep_until((Instant::now() + THINK).min(end)).await;
    }
    conn
}

/// Samples the server once the closed connections' descriptors are released (its count back
/// to `baseline_fds`), or after [`RELEASE_LIMIT`].
async fn release_sample(probe: &Probe, baseline_fds: u64, start: Instant) -> Result<Sample> {
    let give_up = Instant::now() + RELEASE_LIMIT;
    for _ in 0..1000 {
        let sample = probe.sample("after", start.elapsed())?;
        if sample.fds <= baseline_fds || Instant::now() >= give_up {
            return Ok(sample);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    probe.sample("after", start.elapsed())
}

// ----- counting --------------------------------------------------------------------------------

/// What can go wrong with one request (or with replacing a connection).
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// Connecting or reading the greeting failed or took over [`SETUP_LIMIT`].
    Setup,
    /// No answer within [`ANSWER_LIMIT`].
    Timeout,
    /// Reset, aborted, or a broken pipe.
    Reset,
    /// The server closed the connection.
    Closed,
    /// An answer other than the one expected.
    Answer,
    /// Any other I/O error.
    Other,
}

impl Kind {
    const ALL: [Kind; 6] = [
        Kind::Setup,
        Kind::Timeout,
        Kind::Reset,
        Kind::Closed,
        Kind::Answer,
        Kind::Other,
    ];

    fn of(e: &std::io::Error) -> Kind {
        use std::io::ErrorKind as K;
        match e.kind() {
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => Kind::Reset,
            K::UnexpectedEof => Kind::Closed,
            _ => Kind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Setup => "setup",
            Kind::Timeout => "timeout",
            Kind::Reset => "reset",
            Kind::Closed => "closed",
            Kind::Answer => "answer",
            Kind::Other => "other",
        }
    }
}

/// Latency buckets: exact below 8 µs, then 8 per power of two (at most 12.5 % wide).
const BUCKETS: usize = 8 * 62;

/// Counters shared by all connections.
#[derive(Debug)]
struct Stats {
    requests: AtomicU64,
    errors: [AtomicU64; Kind::ALL.len()],
    latency: Box<[AtomicU64; BUCKETS]>,
    max_latency_us: AtomicU64,
}

impl Default for Stats {
    fn default() -> Stats {
        Stats {
            requests: AtomicU64::default(),
            errors: Default::default(),
            latency: Box::new(std::array::from_fn(|_| AtomicU64::default())),
            max_latency_us: AtomicU64::default(),
        }
    }
}

impl Stats {
    fn answered(&self, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.latency[bucket(us)].fetch_add(1, Ordering::Relaxed);
        self.max_latency_us.fetch_max(us, Ordering::Relaxed);
    }

    fn error(&self, kind: Kind, conn: usize, start: Instant, what: &str) {
        let before = self.errors();
        self.errors[kind as usize].fetch_add(1, Ordering::Relaxed);
        if before < ERRORS_SHOWN {
            eprintln!(
                "soak: error at {:.1} s, connection {conn}: {} ({what})",
                start.elapsed().as_secs_f64(),
                kind.name()
            );
        } else if before == ERRORS_SHOWN {
            eprintln!("soak: further errors are counted, not shown");
        }
    }

    fn errors(&self) -> u64 {
        self.errors.iter().map(|e| e.load(Ordering::Relaxed)).sum()
    }

    /// The latency under which a fraction `q` of the answers came (a bucket's upper bound, or
    /// the largest latency seen if that is lower).
    fn percentile_us(&self, q: f64) -> u64 {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let wanted = (total as f64 * q).ceil() as u64;
        let mut seen = 0;
        for (i, count) in counts.iter().enumerate() {
            seen += count;
            if seen >= wanted.max(1) {
                return bucket_end(i).min(self.max_latency_us.load(Ordering::Relaxed));
            }
        }
        0
    }
}

/// The bucket of a latency of `us` microseconds.
fn bucket(us: u64) -> usize {
    if us < 8 {
        return us as usize;
    }
    let log = 63 - us.leading_zeros() as usize; // at least 3
    let sub = ((us >> (log - 3)) & 7) as usize;
    ((log - 2) * 8 + sub).min(BUCKETS - 1)
}

/// The first latency past bucket `i`, in microseconds.
fn bucket_end(i: usize) -> u64 {
    if i < 8 {
        return i as u64 + 1;
    }
    let (log, sub) = (i / 8 + 2, (i % 8) as u128);
    u64::try_from((8 + sub + 1) << (log - 3)).unwrap_or(u64::MAX)
}

// ----- the server's process ------------------------------------------------------------------

/// Reads another process's memory and descriptors from `/proc/PID`.
#[derive(Debug, Clone, Copy)]
struct Probe {
    pid: u32,
}

/// The server at one moment.
#[derive(Debug, Clone)]
struct Sample {
    label: &'static str,
    /// Time since the window started.
    at: Duration,
    rss_kib: u64,
    peak_rss_kib: u64,
    fds: u64,
}

impl Probe {
    fn sample(&self, label: &'static str, at: Duration) -> Result<Sample> {
        let path = format!("/proc/{}/status", self.pid);
        let status = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {path} (has the server exited?)"))?;
        let kib = |field: &str| {
            status
                .lines()
                .find_map(|line| {
                    line.strip_prefix(field)?
                        .strip_suffix("kB")?
                        .trim()
                        .parse()
                        .ok()
                })
                .with_context(|| format!("no {field} in {path}"))
        };
        let rss_kib = kib("VmRSS:")?;
        let peak_rss_kib = kib("VmHWM:")?;
        let dir = format!("/proc/{}/fd", self.pid);
        let fds = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {dir}"))?
            .count() as u64;
        Ok(Sample {
            label,
            at,
            rss_kib,
            peak_rss_kib,
            fds,
        })
    }
}

/// This process's soft limit on open descriptors.
fn soft_fd_limit() -> Result<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits")?;
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .context("no `Max open files` line")?;
    let soft = line["Max open files".len()..]
        .split_whitespace()
        .next()
        .context("no soft limit")?;
    Ok(if soft == "unlimited" {
        u64::MAX
    } else {
        soft.parse()?
    })
}

// ----- the report ------------------------------------------------------------------------------

/// The report for `cargo xtask soak`: one record a line, a word then `key=value` pairs.
fn report(args: &Args, stats: &Stats, samples: &[Sample]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "run conns={} secs={:.3} think_ms={} answer_limit_ms={}",
        args.conns,
        args.window.as_secs_f64(),
        THINK.as_millis(),
        ANSWER_LIMIT.as_millis()
    );
    let _ = writeln!(
        out,
        "requests count={}",
        stats.requests.load(Ordering::Relaxed)
    );
    let _ = write!(out, "errors");
    for kind in Kind::ALL {
        let count = stats.errors[kind as usize].load(Ordering::Relaxed);
        let _ = write!(out, " {}={count}", kind.name());
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "latency_us p50={} p99={} p999={} max={}",
        stats.percentile_us(0.50),
        stats.percentile_us(0.99),
        stats.percentile_us(0.999),
        stats.max_latency_us.load(Ordering::Relaxed)
    );
    for s in samples {
        let _ = writeln!(
            out,
            "sample label={} at={:.1} rss_kib={} peak_rss_kib={} fds={}",
            s.label,
            s.at.as_secs_f64(),
            s.rss_kib,
            s.peak_rss_kib,
            s.fds
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_ordered_and_bounded() {
        let mut last = 0;
        for us in 0..1_000_000u64 {
            let b = bucket(us);
            assert!(b >= last, "{us}");
            assert!(
                us < bucket_end(b),
                "{us} in bucket {b} ending {}",
                bucket_end(b)
            );
            if b > 0 {
                assert!(us >= bucket_end(b - 1), "{us}");
            }
            last = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn percentiles_come_from_the_buckets() {
        let stats = Stats::default();
        for us in 1..=100 {
            stats.answered(Duration::from_micros(us));
        }
        assert_eq!(stats.percentile_us(0.5), bucket_end(bucket(50)));
        assert_eq!(stats.percentile_us(0.99), bucket_end(bucket(99)).min(100));
        assert_eq!(stats.percentile_us(1.0), 100);
        assert_eq!(stats.max_latency_us.load(Ordering::Relaxed), 100);
    }
}
