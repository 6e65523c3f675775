//! `cargo xtask soak [--minutes N] [--conns C] [--port P]`: holds C ping-pong connections to the
//! example `sockets-server` for N minutes and checks that the server's memory and descriptor
//! count stay flat (SPEC §4.6). Not part of `cargo xtask ci`: it takes minutes. Results are
//! recorded in `RELIABILITY.md`.
//!
//! - Builds (release) `sockets-server` (package `examples`) and the load program `soak`
//!   (package `bench`, `bench/src/bin/soak.rs`).
//! - Starts the server on 127.0.0.1 at port P (default: a free port picked here), its output
//!   going to `$CARGO_TARGET_DIR/soak/sockets-server.log` (one line per accepted connection),
//!   with its default options, except that for C over 1,000 (10,000) its `--max-per-ip`
//!   (`--max-connections`) is raised to C: all C connections come from 127.0.0.1.
//! - Runs the load program against it: C connections (default 1,000), each sending a line and
//!   waiting for its answer, 100 ms think time between requests, for N minutes (default 3,
//!   fractions from 0.1 allowed; see "Warm-up" below). It samples the server's `VmRSS` and
//!   `/proc/PID/fd` at the start (all connections greeted), every tenth of the run (the fifth
//!   is the middle, the tenth the end, still connected), and after it closed its connections.
//! - Prints requests, requests per second, errors (a wrong answer, a reset, the server
//!   closing, no answer within 5 s, a failed reconnect, and every line of the server's log
//!   other than its address and its accepted and refused connections: a connection error, a
//!   panic's message, anything unexpected; the first few are shown), latency, RSS and
//!   descriptors, and the verdict: **flat** when RSS and descriptors at the end are at most
//!   1.05 × the middle's and there were no errors. The run also fails when the server holds
//!   more descriptors after the load closed its connections than at the baseline (a
//!   descriptor kept per closed connection leaves middle and end level), when no request was
//!   answered (an idle server proves nothing), or when the server exited during the run.
//!   Any of these makes the exit status non-zero.
//!
//! Warm-up: once traffic starts, the server's RSS rises once, by about 4 KiB per connection,
//! and then stays put. That is each connection's 8 KiB read buffer (`net_io`), allocated when
//! its first bytes arrive, of which a ping-pong connection touches only the first page: a line
//! read that takes everything buffered clears the buffer, so the next read lands at its front
//! again. Every connection sends its first request within one think time, so the rise is over
//! before the first tenth of the run: 3-minute runs are level from their first sample (18 s),
//! and a 0.2-minute run at 100 connections from its first (1.2 s), so short runs are judged
//! flat too. Before `dd6ad7f` the buffer was advanced instead of cleared, its pages past the
//! first were touched once ~4 KiB had arrived (~50 s in), and a run shorter than about
//! 2 minutes put its middle inside that climb and was judged not flat; the default of
//! 3 minutes dates from then.
//!
//! Both programs are started under `setpriv --pdeathsig KILL` where `setpriv` exists, so that
//! they die with xtask even when it is ended by a signal (`kill PID`, a supervisor's SIGTERM),
//! which runs no destructor.
//!
//! The soft descriptor limit is raised to the hard one (`ulimit -S -n`, in a shell around each
//! program) when C connections would not fit under it; C must leave 64 descriptors spare under
//! the hard limit.

use std::fs::File;
use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{cargo, child_command, describe, project_root, target_dir};

/// Usage, for errors.
const USAGE: &str = "usage: cargo xtask soak [--minutes N] [--conns C] [--port P]";
/// Descriptors each process needs besides one per connection.
const SPARE_FDS: u64 = 64;
/// How long the server may take to print its address.
const LISTEN_LIMIT: Duration = Duration::from_secs(15);
/// What the load program may take besides the soak itself (setting connections up, closing).
const LOAD_SLACK: Duration = Duration::from_secs(120);
/// How often a waiting loop looks again.
const POLL: Duration = Duration::from_millis(100);
/// `sockets-server`'s default `--max-per-ip`.
const SERVER_MAX_PER_IP: usize = 1_000;
/// `sockets-server`'s default `--max-connections`.
const SERVER_MAX_CONNECTIONS: usize = 10_000;
/// The most the end may exceed the middle, as a percentage of the middle (SPEC §4.6: 1.05×).
const FLAT_PERCENT: u64 = 105;

/// Runs the soak.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = Options::parse(args)?;
    let raise_to = fd_limit_for(opts.conns)?;

    let root = project_root();
    let mut build = cargo(
        &root,
        &[
            "build",
            "--release",
            "--locked",
            "-p",
            "examples",
            "--bin",
            "sockets-server",
            "-p",
            "bench",
            "--bin",
            "soak",
        ],
    );
    println!("==> {}", describe(&build));
    if !build
        .status()
        .context("could not start cargo build")?
        .success()
    {
        bail!("building sockets-server and the soak load program failed");
    }
    let bin_dir = target_dir(&root).join("release");
    let log_dir = target_dir(&root).join("soak");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log_path = log_dir.join("sockets-server.log");

    let port = match opts.port {
        Some(port) => port,
        None => free_port()?,
    };
    let mut server = Server::start(&bin_dir, port, opts.conns, &log_path, raise_to)?;
    let addr = server.wait_listening()?;
    println!(
        "==> soak: {} connections for {} min against sockets-server at {addr} (pid {}); \
         server output in {}",
        opts.conns,
        opts.minutes,
        server.child.id(),
        log_path.display()
    );

    let secs = opts.minutes * 60.0;
    let mut load = limited(&bin_dir.join("soak"), raise_to);
    load.args(["--addr", &addr, "--conns", &opts.conns.to_string()])
        .args(["--secs", &format!("{secs:.3}")])
        .args(["--server-pid", &server.child.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!("==> {}", describe(&load));
    let setup = Duration::from_secs(10 * (opts.conns as u64 / 64 + 1));
    let report = run_load(load, Duration::from_secs_f64(secs) + setup + LOAD_SLACK)?;

    let server_alive = server.child.try_wait()?.is_none();
    server.stop();
    let log = ServerLog::read(&log_path)?;
    let report = Report::parse(&report).context("reading the load program's report")?;
    let verdict = Verdict::of(&report, &log, server_alive)?;
    print!("{}", summary(&opts, &addr, &report, &log, &verdict));
    ensure!(verdict.flat, "soak failed: {}", verdict.why.join("; "));
    Ok(())
}

/// The command line.
#[derive(Debug, Clone, Copy)]
struct Options {
    minutes: f64,
    conns: usize,
    port: Option<u16>,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options> {
        let mut opts = Options {
            minutes: 3.0,
            conns: 1000,
            port: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let value = args
                .next()
                .with_context(|| format!("{arg} needs a value ({USAGE})"))?;
            let bad = || format!("{arg}: invalid value {value:?} ({USAGE})");
            match arg.as_str() {
                "--minutes" => opts.minutes = value.parse().with_context(bad)?,
                "--conns" => opts.conns = value.parse().with_context(bad)?,
                "--port" => opts.port = Some(value.parse().with_context(bad)?),
                _ => bail!("unknown argument {arg:?} ({USAGE})"),
            }
        }
        ensure!(
            opts.minutes.is_finite() && (0.1..=24.0 * 60.0).contains(&opts.minutes),
            "--minutes must be from 0.1 to 1440"
        );
        ensure!(
            (1..=20_000).contains(&opts.conns),
            "--conns must be from 1 to 20000 (loopback has about 28,000 ephemeral ports)"
        );
        ensure!(opts.port != Some(0), "--port must not be 0");
        Ok(opts)
    }
}

/// The soft descriptor limit the programs must be given, if the current one is too low for
/// `conns` connections (children inherit this process's limits).
fn fd_limit_for(conns: usize) -> Result<Option<u64>> {
    let limits =
        std::fs::read_to_string("/proc/self/limits").context("reading /proc/self/limits")?;
    let (soft, hard) =
        open_files_limits(&limits).context("no `Max open files` in /proc/self/limits")?;
    let need = conns as u64 + SPARE_FDS;
    if soft >= need {
        return Ok(None);
    }
    ensure!(
        hard >= need,
        "{conns} connections need {need} descriptors per process, over the hard limit {hard}: \
         use --conns {} or less",
        hard.saturating_sub(SPARE_FDS)
    );
    println!("==> soak: raising the soft descriptor limit from {soft} to {hard} for the run");
    Ok(Some(hard))
}

/// The soft and hard `Max open files` of a `/proc/PID/limits` text.
fn open_files_limits(limits: &str) -> Option<(u64, u64)> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let mut values = line["Max open files".len()..]
        .split_whitespace()
        .map(|v| match v {
            "unlimited" => Some(u64::MAX),
            v => v.parse().ok(),
        });
    Some((values.next()??, values.next()??))
}

/// A command for `program`, run under a soft descriptor limit of `limit` when one is given,
/// and killed when xtask dies ([`child_command`]: a SIGTERM to xtask alone once left the server
/// and the load program running).
fn limited(program: &Path, limit: Option<u64>) -> Command {
    match limit {
        None => child_command(program),
        Some(limit) => {
            let mut c = child_command("sh");
            c.args(["-c", r#"ulimit -S -n "$0" && exec "$@""#])
                .arg(limit.to_string())
                .arg(program);
            c
        }
    }
}

/// `sockets-server`'s command line for a soak of `conns` connections on `port`: its defaults
/// (as shipped), except that a cap `conns` would exceed is raised to `conns` (every soak
/// connection comes from 127.0.0.1, and the server closes those over its per-address cap).
fn server_args(port: u16, conns: usize) -> Vec<String> {
    let mut args = vec!["127.0.0.1".to_owned(), port.to_string()];
    if conns > SERVER_MAX_PER_IP {
        args.extend(["--max-per-ip".to_owned(), conns.to_string()]);
    }
    if conns > SERVER_MAX_CONNECTIONS {
        args.extend(["--max-connections".to_owned(), conns.to_string()]);
    }
    args
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let probe = TcpListener::bind("127.0.0.1:0").context("looking for a free port")?;
    Ok(probe.local_addr()?.port())
}

/// The server under test; killed when dropped.
#[derive(Debug)]
struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    fn start(
        bin_dir: &Path,
        port: u16,
        conns: usize,
        log: &Path,
        limit: Option<u64>,
    ) -> Result<Server> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let mut cmd = limited(&bin_dir.join("sockets-server"), limit);
        cmd.args(server_args(port, conns))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        println!("==> {} > {}", describe(&cmd), log.display());
        let child = cmd
            .spawn()
            .with_context(|| format!("could not start {}", describe(&cmd)))?;
        Ok(Server {
            child,
            log: log.to_path_buf(),
        })
    }

    /// Waits for `Server is listening at ADDR` in the log and returns `ADDR`.
    fn wait_listening(&mut self) -> Result<String> {
        const READY: &str = "Server is listening at ";
        let deadline = Instant::now() + LISTEN_LIMIT;
        while Instant::now() < deadline {
            let text = std::fs::read_to_string(&self.log).unwrap_or_default();
            if let Some(addr) = text.lines().find_map(|l| l.strip_prefix(READY)) {
                return Ok(addr.trim().to_owned());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "sockets-server exited ({status}) before listening: {}",
                    text.trim()
                );
            }
            thread::sleep(POLL);
        }
        bail!("sockets-server did not print its address within {LISTEN_LIMIT:?}")
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the load program for at most `limit` and returns its standard output.
fn run_load(mut load: Command, limit: Duration) -> Result<String> {
    let mut child = load
        .spawn()
        .with_context(|| format!("could not start {}", describe(&load)))?;
    let mut stdout = child.stdout.take().context("no stdout")?;
    let reader = thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("the load program ran over {limit:?} and was killed");
        }
        thread::sleep(POLL);
    };
    let text = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the report reader panicked"))?
        .context("reading the load program's report")?;
    ensure!(status.success(), "the load program failed ({status})");
    Ok(text)
}

/// The lines `sockets-server` prints when all is well, as it words them (see
/// `examples/src/bin/sockets-server.rs`): its address, one line per connection it accepted, and
/// its report of connections over `--max-per-ip` (each of those is also a failed setup in the
/// load program's count). Every other line it can print tells of a fault in a soak:
/// `Connection with ADDR ended: ERROR`; `Dropped N connections: no valid PROXY header`, which
/// needs `--proxy-protocol`, never given here; the shutdown's lines (`Shutting down`, `Closed N
/// connections still open`, `Server stopped`), which need a SIGINT or SIGTERM, while the soak
/// stops the server with SIGKILL only after reading its state; and, on stderr (the same file),
/// its one-line runtime failure, a shell's complaint about `ulimit`, and a panic's message
/// (`thread '…' panicked at FILE:LINE:COL:`, then its payload and a `note:` line), which tokio
/// catches in a connection's task without the server stopping.
const GOOD_LINES: [&str; 3] = ["Server is listening at ", "Accepted ", "Refused "];

/// What the server printed.
#[derive(Debug, Default)]
struct ServerLog {
    accepted: u64,
    /// Every line that is not one of [`GOOD_LINES`], in order: `Connection with ADDR ended:
    /// ERROR`, a panic's lines, anything else unexpected.
    problems: Vec<String>,
    /// How many of `problems` start a panic's message (contain `panicked at`).
    panics: u64,
}

impl ServerLog {
    fn read(path: &Path) -> Result<ServerLog> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(ServerLog::parse(&text))
    }

    fn parse(text: &str) -> ServerLog {
        let mut log = ServerLog::default();
        for line in text.lines() {
            // Checked first, so that a panic is counted as one whatever else its line holds.
            if line.contains("panicked at") {
                log.panics += 1;
                log.problems.push(line.to_owned());
            } else if line.starts_with("Accepted ") {
                log.accepted += 1;
            } else if !GOOD_LINES.iter().any(|good| line.starts_with(good)) {
                log.problems.push(line.to_owned());
            }
        }
        log
    }
}

/// The server at one moment, as the load program sampled it.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    label: String,
    at_secs: f64,
    rss_kib: u64,
    peak_rss_kib: u64,
    fds: u64,
}

/// The load program's report (see `bench/src/bin/soak.rs`).
#[derive(Debug, Default)]
struct Report {
    conns: u64,
    secs: f64,
    think_ms: u64,
    answer_limit_ms: u64,
    requests: u64,
    /// Errors by kind, in the order reported.
    errors: Vec<(String, u64)>,
    /// Latency percentiles (`p50`, `p99`, ...) and `max`, in microseconds.
    latency_us: Vec<(String, u64)>,
    samples: Vec<Sample>,
}

impl Report {
    fn parse(text: &str) -> Result<Report> {
        let mut report = Report::default();
        // Records a report must have: without them it would read as no errors, or no load.
        let (mut has_requests, mut has_errors) = (false, false);
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let Some(record) = words.next() else {
                continue;
            };
            let pairs: Vec<(&str, &str)> = words
                .map(|w| w.split_once('=').with_context(|| format!("in {line:?}")))
                .collect::<Result<_>>()?;
            let get = |key: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == key)
                    .map(|(_, v)| *v)
                    .with_context(|| format!("no {key} in {line:?}"))
            };
            let num = |key: &str| -> Result<u64> {
                let v = get(key)?;
                v.parse().with_context(|| format!("{key}={v} in {line:?}"))
            };
            let real = |key: &str| -> Result<f64> {
                let v = get(key)?;
                v.parse().with_context(|| format!("{key}={v} in {line:?}"))
            };
            let all_nums = || -> Result<Vec<(String, u64)>> {
                pairs
                    .iter()
                    .map(|(k, v)| Ok(((*k).to_owned(), v.parse()?)))
                    .collect::<Result<_>>()
                    .with_context(|| format!("in {line:?}"))
            };
            match record {
                "run" => {
                    report.conns = num("conns")?;
                    report.secs = real("secs")?;
                    report.think_ms = num("think_ms")?;
                    report.answer_limit_ms = num("answer_limit_ms")?;
                }
                "requests" => {
                    report.requests = num("count")?;
                    has_requests = true;
                }
                "errors" => {
                    report.errors = all_nums()?;
                    has_errors = true;
                }
                "latency_us" => report.latency_us = all_nums()?,
                "sample" => report.samples.push(Sample {
                    label: get("label")?.to_owned(),
                    at_secs: real("at")?,
                    rss_kib: num("rss_kib")?,
                    peak_rss_kib: num("peak_rss_kib")?,
                    fds: num("fds")?,
                }),
                _ => bail!("unknown record {line:?}"),
            }
        }
        ensure!(report.secs > 0.0, "no `run` record");
        ensure!(has_requests, "no `requests` record");
        ensure!(has_errors, "no `errors` record");
        Ok(report)
    }

    fn sample(&self, label: &str) -> Result<&Sample> {
        self.samples
            .iter()
            .find(|s| s.label == label)
            .with_context(|| format!("no {label} sample"))
    }

    fn client_errors(&self) -> u64 {
        self.errors.iter().map(|(_, n)| n).sum()
    }
}

/// Whether the run was flat, and why not.
#[derive(Debug)]
struct Verdict {
    flat: bool,
    why: Vec<String>,
}

impl Verdict {
    fn of(report: &Report, log: &ServerLog, server_alive: bool) -> Result<Verdict> {
        let (middle, end) = (report.sample("middle")?, report.sample("end")?);
        let mut why = Vec::new();
        if !within_bound(middle.rss_kib, end.rss_kib) {
            why.push(format!(
                "RSS grew from {} KiB (middle) to {} KiB (end), over 1.05x",
                middle.rss_kib, end.rss_kib
            ));
        }
        if !within_bound(middle.fds, end.fds) {
            why.push(format!(
                "descriptors grew from {} (middle) to {} (end), over 1.05x",
                middle.fds, end.fds
            ));
        }
        // The load closed every connection and waited (up to 10 s) for the server's count to
        // come back down: what is still open was kept by the server.
        let (baseline, after) = (report.sample("baseline")?, report.sample("after")?);
        if after.fds > baseline.fds {
            why.push(format!(
                "{} descriptors open after the load closed its connections, baseline {}",
                after.fds, baseline.fds
            ));
        }
        let errors = report.client_errors() + log.problems.len() as u64;
        if errors > 0 {
            why.push(format!("{errors} errors"));
        }
        // Named on its own: a panic ends only its connection's task, and the load program may
        // see no more of it than one replaced connection.
        if log.panics > 0 {
            let s = if log.panics == 1 { "" } else { "s" };
            why.push(format!("{} server panic{s}", log.panics));
        }
        // A run that answered nothing measured an idle server, not one under load.
        if report.requests == 0 {
            why.push("no request was answered".to_owned());
        }
        if !server_alive {
            why.push("the server exited during the run".to_owned());
        }
        Ok(Verdict {
            flat: why.is_empty(),
            why,
        })
    }
}

/// Whether `end` ≤ `middle` × 1.05.
fn within_bound(middle: u64, end: u64) -> bool {
    u128::from(end) * 100 <= u128::from(middle) * u128::from(FLAT_PERCENT)
}

/// The human-readable summary.
fn summary(
    opts: &Options,
    addr: &str,
    report: &Report,
    log: &ServerLog,
    verdict: &Verdict,
) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let errors = report.client_errors() + log.problems.len() as u64;
    let by_kind: Vec<String> = report
        .errors
        .iter()
        .map(|(kind, n)| format!("{kind} {n}"))
        .collect();
    let latency: Vec<String> = report
        .latency_us
        .iter()
        .map(|(k, us)| {
            let bound = if k == "max" { "" } else { "<= " };
            format!("{k} {bound}{}", micros(*us))
        })
        .collect();
    let _ = writeln!(out, "\n== soak summary ==");
    let _ = writeln!(
        out,
        "command     cargo xtask soak --minutes {} --conns {}{}",
        opts.minutes,
        opts.conns,
        opts.port
            .map(|p| format!(" --port {p}"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "load        {} connections to sockets-server at {addr}, ping-pong, {} ms think time, \
         {:.0} s, answer limit {} ms",
        report.conns, report.think_ms, report.secs, report.answer_limit_ms
    );
    let _ = writeln!(
        out,
        "requests    {} ({:.1}/s)",
        report.requests,
        report.requests as f64 / report.secs
    );
    // A panic takes several lines (its place, its message, a note): named apart from them.
    let panics = match log.panics {
        0 => String::new(),
        1 => ", among them 1 panic".to_owned(),
        n => format!(", among them {n} panics"),
    };
    let _ = writeln!(
        out,
        "errors      {errors} (client: {}; server-logged: {}{panics})",
        by_kind.join(", "),
        log.problems.len()
    );
    for line in log.problems.iter().take(5) {
        let _ = writeln!(out, "            server: {line}");
    }
    let _ = writeln!(out, "latency     {}", latency.join(", "));
    let _ = writeln!(out, "accepted    {} connections (server log)", log.accepted);
    let _ = writeln!(
        out,
        "server      {:<10} {:>8} {:>12} {:>17} {:>7}",
        "sample", "at (s)", "RSS (KiB)", "peak RSS (KiB)", "fds"
    );
    for s in &report.samples {
        let _ = writeln!(
            out,
            "            {:<10} {:>8.1} {:>12} {:>17} {:>7}",
            s.label, s.at_secs, s.rss_kib, s.peak_rss_kib, s.fds
        );
    }
    if let (Ok(m), Ok(e)) = (report.sample("middle"), report.sample("end")) {
        let _ = writeln!(
            out,
            "end/middle  RSS {:.3}, fds {:.3} (flat: both <= 1.05, 0 errors, fds after <= baseline)",
            e.rss_kib as f64 / m.rss_kib.max(1) as f64,
            e.fds as f64 / m.fds.max(1) as f64
        );
    }
    let _ = writeln!(
        out,
        "verdict     {}",
        if verdict.flat {
            "flat".to_owned()
        } else {
            format!("NOT flat: {}", verdict.why.join("; "))
        }
    );
    out
}

/// Microseconds as text, in µs or ms.
fn micros(us: u64) -> String {
    if us < 1000 {
        format!("{us} µs")
    } else {
        format!("{:.1} ms", us as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
run conns=1000 secs=600.000 think_ms=100 answer_limit_ms=5000
requests count=5000000
errors setup=0 timeout=0 reset=0 closed=0 answer=0 other=0
latency_us p50=96 p99=1024 p999=2048 max=8000
sample label=baseline at=0.0 rss_kib=3000 peak_rss_kib=3000 fds=10
sample label=start at=0.0 rss_kib=9000 peak_rss_kib=9000 fds=1010
sample label=middle at=300.0 rss_kib=10000 peak_rss_kib=10000 fds=1010
sample label=end at=600.0 rss_kib=10500 peak_rss_kib=10600 fds=1010
sample label=after at=601.0 rss_kib=9000 peak_rss_kib=10600 fds=10
";

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_have_defaults_and_bounds() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!((o.minutes, o.conns, o.port), (3.0, 1000, None));
        let o = Options::parse(&args(&[
            "--minutes",
            "10",
            "--conns",
            "50",
            "--port",
            "9100",
        ]))
        .unwrap();
        assert_eq!((o.minutes, o.conns, o.port), (10.0, 50, Some(9100)));
        for bad in [
            &["--minutes"][..],
            &["--minutes", "0"],
            &["--minutes", "NaN"],
            &["--conns", "0"],
            &["--conns", "100000"],
            &["--port", "0"],
            &["--ci", "1"],
        ] {
            assert!(Options::parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_report_is_read_back() {
        let r = Report::parse(REPORT).unwrap();
        assert_eq!((r.conns, r.requests, r.think_ms), (1000, 5_000_000, 100));
        assert_eq!(r.errors.len(), 6);
        assert_eq!(r.client_errors(), 0);
        assert_eq!(r.latency_us[3], ("max".to_owned(), 8000));
        assert_eq!(r.samples.len(), 5);
        assert_eq!(r.sample("end").unwrap().peak_rss_kib, 10600);
        assert!(Report::parse("bogus line").is_err());
        assert!(Report::parse("requests count=x").is_err());
    }

    #[test]
    fn flat_means_end_within_five_percent_of_middle_and_no_errors() {
        let r = Report::parse(REPORT).unwrap();
        let clean = ServerLog::default();
        assert!(Verdict::of(&r, &clean, true).unwrap().flat);
        assert!(!Verdict::of(&r, &clean, false).unwrap().flat);

        let grown = REPORT.replace("rss_kib=10500 ", "rss_kib=10501 ");
        let v = Verdict::of(&Report::parse(&grown).unwrap(), &clean, true).unwrap();
        assert!(!v.flat && v.why[0].contains("RSS"), "{v:?}");

        let leaky = REPORT.replace(
            "at=600.0 rss_kib=10500 peak_rss_kib=10600 fds=1010",
            "at=600.0 rss_kib=10500 peak_rss_kib=10600 fds=1061",
        );
        let v = Verdict::of(&Report::parse(&leaky).unwrap(), &clean, true).unwrap();
        assert!(!v.flat && v.why[0].contains("descriptors"), "{v:?}");

        let failed = REPORT.replace("reset=0", "reset=2");
        let v = Verdict::of(&Report::parse(&failed).unwrap(), &clean, true).unwrap();
        assert_eq!(v.why, ["2 errors"]);

        let log = ServerLog::parse(
            "Server is listening at 127.0.0.1:1\nAccepted 127.0.0.1:2\n\
             Connection with 127.0.0.1:2 ended: connection reset\n",
        );
        assert_eq!(log.accepted, 1);
        assert!(!Verdict::of(&r, &log, true).unwrap().flat);
    }

    #[test]
    fn a_panic_or_any_unexpected_server_line_fails_the_run() {
        // Once judged flat: tokio catches a connection task's panic, the server goes on, and
        // its message went unread in the log.
        let r = Report::parse(REPORT).unwrap();
        let good = "Server is listening at 127.0.0.1:1\nAccepted 127.0.0.1:2\n\
                    Accepted 127.0.0.1:3 via 10.0.0.1:4\n\
                    Refused 2 connections: over --max-per-ip\n";
        let log = ServerLog::parse(good);
        assert_eq!((log.accepted, log.panics), (2, 0));
        assert!(log.problems.is_empty(), "{log:?}");
        assert!(Verdict::of(&r, &log, true).unwrap().flat);

        let panicked = format!(
            "{good}thread 'tokio-runtime-worker' panicked at examples/src/lib.rs:1:2:\n\
             boom\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n"
        );
        let log = ServerLog::parse(&panicked);
        assert_eq!(log.panics, 1);
        assert_eq!(log.problems.len(), 3, "{log:?}");
        assert!(log.problems[0].contains("panicked at"), "{log:?}");
        let v = Verdict::of(&r, &log, true).unwrap();
        assert!(!v.flat, "{v:?}");
        assert_eq!(v.why, ["3 errors", "1 server panic"]);
        let text = summary(&Options::parse(&[]).unwrap(), "127.0.0.1:1", &r, &log, &v);
        assert!(
            text.contains("server-logged: 3, among them 1 panic)"),
            "{text}"
        );
        assert!(
            text.contains("server: thread 'tokio-runtime-worker' panicked at"),
            "{text}"
        );

        // Lines the server prints only on a fault, or that it never prints.
        for bad in [
            "Connection with 127.0.0.1:2 ended: connection reset",
            "Dropped 1 connection: no valid PROXY header within 5 s",
            "Shutting down (3 open)",
            "Server stopped",
            "sockets-server: accept failed: too many open files",
            "sh: 1: ulimit: error setting limit (Operation not permitted)",
            "",
        ] {
            let log = ServerLog::parse(&format!("{good}{bad}\n"));
            assert_eq!(log.problems, [bad], "{bad:?}");
            assert_eq!(log.panics, 0);
            assert!(!Verdict::of(&r, &log, true).unwrap().flat, "{bad:?}");
        }
    }

    #[test]
    fn a_run_without_traffic_or_without_an_error_count_is_not_flat() {
        // Once judged flat: a report of 0 requests, and one with no `errors` record at all.
        let clean = ServerLog::default();
        let idle = REPORT.replace("count=5000000", "count=0");
        let v = Verdict::of(&Report::parse(&idle).unwrap(), &clean, true).unwrap();
        assert!(!v.flat, "{v:?}");
        assert_eq!(v.why, ["no request was answered"]);
        let uncounted: String = REPORT
            .lines()
            .filter(|l| !l.starts_with("errors "))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = Report::parse(&uncounted).expect_err("no errors record");
        assert!(err.to_string().contains("errors"), "{err:#}");
        let unrequested: String = REPORT
            .lines()
            .filter(|l| !l.starts_with("requests "))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(Report::parse(&unrequested).is_err());
    }

    #[test]
    fn descriptors_kept_after_the_close_fail_the_run() {
        // A server that keeps each closed connection's descriptor stays level while the
        // connections are open (middle = end), so only the `after` sample can show it.
        let clean = ServerLog::default();
        let kept = REPORT.replace(
            "label=after at=601.0 rss_kib=9000 peak_rss_kib=10600 fds=10",
            "label=after at=601.0 rss_kib=9000 peak_rss_kib=10600 fds=1010",
        );
        let v = Verdict::of(&Report::parse(&kept).unwrap(), &clean, true).unwrap();
        assert!(!v.flat, "{v:?}");
        assert!(
            v.why[0].contains("1010") && v.why[0].contains("baseline"),
            "{v:?}"
        );
        // Back to the baseline (or below it): flat.
        let below = REPORT.replace("fds=10\n", "fds=9\n");
        assert!(
            Verdict::of(&Report::parse(&below).unwrap(), &clean, true)
                .unwrap()
                .flat
        );
    }

    #[test]
    fn the_server_takes_every_connection_of_the_soak() {
        // Up to sockets-server's defaults (1,000 per client address, 10,000 in all), as shipped.
        assert_eq!(server_args(9100, 1000), ["127.0.0.1", "9100"]);
        // Beyond them, the caps are raised to C: every soak connection comes from 127.0.0.1,
        // and the server would close the ones over its cap at once.
        let args = server_args(9100, 1100);
        let at = args
            .iter()
            .position(|a| a == "--max-per-ip")
            .expect("--max-per-ip");
        assert_eq!(args[at + 1], "1100");
        assert!(!args.iter().any(|a| a == "--max-connections"), "{args:?}");
        let args = server_args(9100, 20_000);
        let at = args
            .iter()
            .position(|a| a == "--max-connections")
            .expect("--max-connections");
        assert_eq!(args[at + 1], "20000");
    }

    #[test]
    fn descriptor_limits_are_read_from_proc() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(open_files_limits(limits), Some((1024, 524_288)));
        assert_eq!(open_files_limits("Max processes 1 1"), None);
    }
}
