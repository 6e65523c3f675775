//! `cargo xtask soak-mix [--minutes N] [--workers W]`: the mixed soak. One server process
//! (`soak-mix serve`, package `bench`, `bench/src/bin/soak_mix.rs`) listens with plain TCP,
//! TCP behind a required PROXY header, TLS, UDP and a Unix socket; the load program
//! (`soak-mix load`) runs W workers (default 24) for N minutes (default 20), each opening one
//! connection after another, going round the shapes: plain TCP, TLS, Unix and PROXY v1 (5
//! lines in ping-pong, then an orderly close), a TCP half-close, abrupt resets (`SO_LINGER` 0)
//! of a TCP and a TLS connection, a TLS handshake cut after its first bytes, and a UDP echo.
//!
//! Every 30 s (a tenth of a shorter run; and before the load, and after it) it samples the
//! server's `VmRSS`, open descriptors (`/proc/PID/fd`), threads (`Threads:` in `/proc/PID/status`) and tasks (tokio's
//! alive tasks and the connection handlers running, which the server prints every second with
//! its counts of handlers that panicked and of accept errors). The server's stderr goes to
//! `$CARGO_TARGET_DIR/soak-mix/serve.stderr`. The certificates are made with `openssl` (a CA
//! and a leaf for 127.0.0.1 and `localhost`).
//!
//! **Leak-free** means: RSS at the end at most 1.05 × the middle's; after the load stopped
//! (waiting at most 15 s) the descriptors, the threads, the alive tasks and the running
//! handlers back to the baseline's; a load report with every shape's line and the total, every
//! shape with connections that succeeded and none that failed; no handler panic and no accept
//! error counted by the server, and no `panicked at` on its stderr. Otherwise the exit status
//! is non-zero, as it is when the load program fails (it does when one of its workers
//! panicked: see its source). Not part of `cargo xtask ci`. Results go in `RELIABILITY.md`.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

use crate::{cargo, child_command, describe, project_root, target_dir};

const USAGE: &str = "usage: cargo xtask soak-mix [--minutes N] [--workers W]";
/// How often the server is sampled.
const EVERY: Duration = Duration::from_secs(30);
/// How long the server may take to come back to its baseline once the load stopped: past
/// tokio's 10 s keep-alive of an idle blocking-pool thread (see [`verdict`]'s thread check).
const SETTLE: Duration = Duration::from_secs(15);
/// The shapes of the load program (`SHAPES` in `bench/src/bin/soak_mix.rs`), each of which its
/// report must give a line for.
const SHAPES: [&str; 9] = [
    "tcp",
    "tls",
    "unix",
    "proxy_v1",
    "tcp_half_close",
    "tcp_reset",
    "tls_reset",
    "tls_cut_handshake",
    "udp",
];
/// How many lines of the server's stderr the summary shows.
const STDERR_SHOWN: usize = 5;

/// One sample of the server process.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    at_secs: f64,
    rss_kib: u64,
    fds: u64,
    threads: u64,
    tasks: u64,
    conns: u64,
    /// The server's count of handlers that panicked, so far.
    panics: u64,
    /// The server's count of accept errors, so far.
    accept_errors: u64,
}

/// The server's `tasks` line: `alive=N conns=M panics=P accept_errors=E`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct TaskLine {
    /// tokio's alive tasks.
    alive: u64,
    /// Connection handlers running.
    conns: u64,
    /// Handlers that panicked so far.
    panics: u64,
    /// Accept errors so far.
    accept_errors: u64,
}

/// What the server last printed.
type Tasks = Arc<Mutex<Option<TaskLine>>>;

/// Runs the mixed soak.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let (mut minutes, mut workers) = (20.0_f64, 24_usize);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{arg} needs a value ({USAGE})"))?;
        match arg.as_str() {
            "--minutes" => minutes = value.parse().context(USAGE)?,
            "--workers" => workers = value.parse().context(USAGE)?,
            _ => bail!("unknown argument {arg:?} ({USAGE})"),
        }
    }
    ensure!(
        (0.1..=240.0).contains(&minutes),
        "--minutes must be from 0.1 to 240"
    );
    ensure!(
        (1..=256).contains(&workers),
        "--workers must be from 1 to 256"
    );

    let root = project_root();
    let mut build = cargo(
        &root,
        &[
            "build",
            "--release",
            "--locked",
            "-p",
            "bench",
            "--bin",
            "soak-mix",
        ],
    );
    println!("==> {}", describe(&build));
    ensure!(build.status()?.success(), "building soak-mix failed");
    let exe = target_dir(&root).join("release").join("soak-mix");
    let dir = target_dir(&root).join("soak-mix");
    std::fs::create_dir_all(&dir)?;
    make_pki(&dir)?;
    let stderr_path = dir.join("serve.stderr");
    let stderr = File::create(&stderr_path)
        .with_context(|| format!("creating {}", stderr_path.display()))?;

    let mut server = child_command(&exe);
    server
        .arg("serve")
        .arg("--unix")
        .arg(dir.join("soak.sock"))
        .arg("--cert")
        .arg(dir.join("chain.pem"))
        .arg("--key")
        .arg(dir.join("key.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    println!("==> {} 2> {}", describe(&server), stderr_path.display());
    let mut server = Guard(server.spawn().context("starting soak-mix serve")?);
    let pid = server.0.id();
    let stdout = server.0.stdout.take().context("no stdout")?;
    let tasks: Tasks = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let tasks = tasks.clone();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addrs) = line.strip_prefix("listening ") {
                    let _ = tx.send(addrs.to_owned());
                } else if let Some(rest) = line.strip_prefix("tasks ") {
                    *tasks.lock().expect("tasks") = parse_tasks(rest);
                }
            }
        });
    }
    let addrs = rx
        .recv_timeout(Duration::from_secs(15))
        .context("the server did not print its addresses")?;
    let addr = |key: &str| -> Result<String> {
        addrs
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .map(str::to_owned)
            .with_context(|| format!("no {key} in {addrs:?}"))
    };
    println!("==> soak-mix server pid {pid}: {addrs}");

    // Baseline: idle, after its first `tasks` line.
    thread::sleep(Duration::from_secs(2));
    let start = Instant::now();
    let baseline = sample(pid, &tasks, start)?;

    let secs = minutes * 60.0;
    let mut load = child_command(&exe);
    load.arg("load");
    for key in ["tcp", "proxy", "tls", "udp", "unix"] {
        load.arg(format!("--{key}")).arg(addr(key)?);
    }
    load.arg("--ca")
        .arg(dir.join("ca.pem"))
        .args(["--workers", &workers.to_string()])
        .args(["--secs", &format!("{secs:.1}")])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    println!("==> {}", describe(&load));
    let mut load = Guard(load.spawn().context("starting soak-mix load")?);
    let load_out = load.0.stdout.take().context("no stdout")?;
    let report = thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(load_out), &mut text);
        text
    });

    let mut samples = Vec::new();
    let limit = Duration::from_secs_f64(secs) + Duration::from_secs(60);
    // Every 30 s, or ten times in a shorter run (which would otherwise end before its first
    // sample, and fail for want of one).
    let every = EVERY.min(Duration::from_secs_f64(secs / 10.0).max(Duration::from_secs(1)));
    let mut next = every;
    let status = loop {
        if let Some(status) = load.0.try_wait()? {
            break status;
        }
        ensure!(start.elapsed() < limit, "the load ran over {limit:?}");
        ensure!(
            server.0.try_wait()?.is_none(),
            "the server exited during the run (its stderr: {})",
            stderr_path.display()
        );
        if start.elapsed() >= next {
            let s = sample(pid, &tasks, start)?;
            println!(
                "sample at={:.0}s rss_kib={} fds={} threads={} tasks={} conns={}",
                s.at_secs, s.rss_kib, s.fds, s.threads, s.tasks, s.conns
            );
            samples.push(s);
            next += every;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let report = report
        .join()
        .map_err(|_| anyhow::anyhow!("reader panicked"))?;
    if !status.success() {
        // Its report still says what it did (a worker's panic fails it after the report).
        print!("{report}");
        bail!("the load program failed ({status})");
    }

    // After: wait (bounded) for the server to come back to its baseline.
    let settle = Instant::now();
    let after = loop {
        thread::sleep(Duration::from_millis(1100));
        let s = sample(pid, &tasks, start)?;
        let settled = s.fds <= baseline.fds
            && s.threads <= baseline.threads
            && s.tasks <= baseline.tasks
            && s.conns == 0;
        if settled || settle.elapsed() >= SETTLE {
            break s;
        }
    };
    drop(server);
    // Complete now: the server is gone.
    let stderr = std::fs::read_to_string(&stderr_path)
        .with_context(|| format!("reading {}", stderr_path.display()))?;

    print!("{report}");
    println!("\n== soak-mix summary ({minutes} min, {workers} workers) ==");
    println!(
        "{:<10} {:>8} {:>10} {:>6} {:>8} {:>6} {:>6}",
        "sample", "at (s)", "RSS (KiB)", "fds", "threads", "tasks", "conns"
    );
    let row = |label: &str, s: &Sample| {
        println!(
            "{label:<10} {:>8.0} {:>10} {:>6} {:>8} {:>6} {:>6}",
            s.at_secs, s.rss_kib, s.fds, s.threads, s.tasks, s.conns
        );
    };
    row("baseline", &baseline);
    for s in &samples {
        row("", s);
    }
    row("after", &after);
    println!(
        "faults     {} handler panics, {} accept errors (the server's count)",
        after.panics, after.accept_errors
    );
    let stderr_lines: Vec<&str> = stderr.lines().collect();
    println!(
        "stderr     {} lines from the server ({})",
        stderr_lines.len(),
        stderr_path.display()
    );
    for line in stderr_lines.iter().take(STDERR_SHOWN) {
        println!("           {line}");
    }

    let why = verdict(&baseline, &samples, &after, &report, &stderr);
    if why.is_empty() {
        println!("verdict    leak-free");
        Ok(())
    } else {
        println!("verdict    NOT leak-free: {}", why.join("; "));
        bail!("soak-mix failed: {}", why.join("; "))
    }
}

/// Why the run is not leak-free (nothing when it is), from the server's samples, the load
/// program's report and the server's stderr.
fn verdict(
    baseline: &Sample,
    samples: &[Sample],
    after: &Sample,
    report: &str,
    stderr: &str,
) -> Vec<String> {
    let mut why = Vec::new();
    if let (Some(middle), Some(end)) = (samples.get(samples.len() / 2), samples.last()) {
        if end.rss_kib * 100 > middle.rss_kib * 105 {
            why.push(format!(
                "RSS grew from {} KiB (middle) to {} KiB (end)",
                middle.rss_kib, end.rss_kib
            ));
        }
    } else {
        why.push("no samples during the load".to_owned());
    }
    if after.fds > baseline.fds {
        why.push(format!(
            "{} descriptors after, baseline {}",
            after.fds, baseline.fds
        ));
    }
    // `Threads:` counts every thread of the server: main, the runtime's workers and the stdin
    // watcher, all started before the baseline (taken idle, 2 s after the server listened), and
    // the threads started lazily under load: tokio's blocking pool (net-sockets hands it a close
    // that must wait), whose idle threads end after 10 s, and short-lived `net-linger` threads.
    // So the baseline holds every thread an idle server keeps, and `after` was taken once the
    // threads were back to it or `SETTLE` (past the pool's 10 s) had passed: a thread still
    // there is one the server kept. (The first sample under load would be a looser reference:
    // it may catch pool threads that come and go.)
    if after.threads > baseline.threads {
        why.push(format!(
            "{} threads after, baseline {}",
            after.threads, baseline.threads
        ));
    }
    if after.tasks > baseline.tasks || after.conns > 0 {
        why.push(format!(
            "{} tasks ({} handlers) after, baseline {}",
            after.tasks, after.conns, baseline.tasks
        ));
    }
    // The server's own counts, as last printed (at most a second before `after`); a panic in
    // that last second still shows on its stderr, read below once it exited.
    if after.panics > 0 {
        why.push(format!("{} handler panics", after.panics));
    }
    if after.accept_errors > 0 {
        why.push(format!("{} accept errors", after.accept_errors));
    }
    let panicked = stderr.lines().filter(|l| l.contains("panicked at")).count();
    if panicked > 0 {
        why.push(format!(
            "{panicked} `panicked at` lines on the server's stderr"
        ));
    }
    match parse_report(report) {
        Ok(shapes) => {
            // Every shape counts, the reset and cut ones too. Their client counts as failed
            // only a step that fails before its own cut: a connect, a TLS handshake, a write of
            // a line or of 7 bytes, `SO_LINGER` 0 set on its own socket. The orderly shapes take
            // the same steps, and the server cuts such a connection first only at its idle
            // timeout (30 s) or its per-address cap, which would fail an orderly one just the
            // same; the cut itself, and what the server makes of it, the client never waits
            // for. So a failure of one is a fault of the server (or of the machine) as much as
            // an orderly shape's is.
            let failed: u64 = shapes.iter().map(|s| s.failed).sum();
            if failed > 0 {
                let by_shape: Vec<String> = shapes
                    .iter()
                    .filter(|s| s.failed > 0)
                    .map(|s| format!("{} {}", s.name, s.failed))
                    .collect();
                why.push(format!(
                    "{failed} connections failed ({})",
                    by_shape.join(", ")
                ));
            }
            // A shape that never succeeded was not exercised: it proves nothing.
            for shape in shapes.iter().filter(|s| s.ok == 0) {
                why.push(format!("no {} connection succeeded", shape.name));
            }
        }
        Err(e) => why.push(format!("the load program's report: {e:#}")),
    }
    why
}

/// One `shape NAME ok=N failed=M` line of the load program's report.
#[derive(Debug, Clone, PartialEq)]
struct Shape {
    name: String,
    ok: u64,
    failed: u64,
}

/// The load program's report: a `shape` line for each of [`SHAPES`] (once, in any order), and
/// a `total ok=N failed=M` line that adds them up. Anything missing, repeated, unknown or
/// unparsable is an error, so that a short or garbled report cannot read as no failures.
fn parse_report(text: &str) -> Result<Vec<Shape>> {
    let mut shapes: Vec<Shape> = Vec::new();
    let mut total = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let record = words.next();
        if record != Some("shape") && record != Some("total") {
            continue;
        }
        let name = if record == Some("shape") {
            let name = words
                .next()
                .with_context(|| format!("no name in {line:?}"))?;
            ensure!(SHAPES.contains(&name), "unknown shape in {line:?}");
            ensure!(
                !shapes.iter().any(|s| s.name == name),
                "shape {name} reported twice"
            );
            Some(name)
        } else {
            ensure!(total.is_none(), "two `total` lines");
            None
        };
        let (mut ok, mut failed) = (None, None);
        for kv in words {
            let (key, value) = kv
                .split_once('=')
                .with_context(|| format!("{kv:?} in {line:?}"))?;
            let slot = match key {
                "ok" => &mut ok,
                "failed" => &mut failed,
                _ => bail!("unknown key {key:?} in {line:?}"),
            };
            ensure!(slot.is_none(), "{key} twice in {line:?}");
            *slot = Some(
                value
                    .parse::<u64>()
                    .with_context(|| format!("{key}={value} in {line:?}"))?,
            );
        }
        let ok = ok.with_context(|| format!("no ok= in {line:?}"))?;
        let failed = failed.with_context(|| format!("no failed= in {line:?}"))?;
        match name {
            Some(name) => shapes.push(Shape {
                name: name.to_owned(),
                ok,
                failed,
            }),
            None => total = Some((ok, failed)),
        }
    }
    let missing: Vec<&str> = SHAPES
        .iter()
        .copied()
        .filter(|name| !shapes.iter().any(|s| s.name == *name))
        .collect();
    ensure!(missing.is_empty(), "no line for shapes {missing:?}");
    let (ok, failed) = total.context("no `total` line")?;
    let sum = |f: fn(&Shape) -> u64| shapes.iter().map(f).sum::<u64>();
    ensure!(
        (ok, failed) == (sum(|s| s.ok), sum(|s| s.failed)),
        "total ok={ok} failed={failed} is not the shapes' sum"
    );
    Ok(shapes)
}

/// Kills and reaps the child when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `alive=N conns=M panics=P accept_errors=E`, each once; `None` when one is missing,
/// repeated, unknown or not a number (a server of another version, or a garbled line).
fn parse_tasks(rest: &str) -> Option<TaskLine> {
    let (mut alive, mut conns, mut panics, mut accept_errors) = (None, None, None, None);
    for kv in rest.split_whitespace() {
        let (key, value) = kv.split_once('=')?;
        let slot = match key {
            "alive" => &mut alive,
            "conns" => &mut conns,
            "panics" => &mut panics,
            "accept_errors" => &mut accept_errors,
            _ => return None,
        };
        if slot.replace(value.parse().ok()?).is_some() {
            return None;
        }
    }
    Some(TaskLine {
        alive: alive?,
        conns: conns?,
        panics: panics?,
        accept_errors: accept_errors?,
    })
}

/// The server now.
fn sample(pid: u32, tasks: &Tasks, start: Instant) -> Result<Sample> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64;
    let line = tasks
        .lock()
        .expect("tasks")
        .context("the server printed no task count")?;
    Ok(Sample {
        at_secs: start.elapsed().as_secs_f64(),
        rss_kib: field("VmRSS:")?,
        fds,
        threads: field("Threads:")?,
        tasks: line.alive,
        conns: line.conns,
        panics: line.panics,
        accept_errors: line.accept_errors,
    })
}

/// A CA and a leaf for 127.0.0.1 and `localhost`, made with `openssl`, in `dir`: `ca.pem`,
/// `chain.pem`, `key.pem`.
fn make_pki(dir: &Path) -> Result<()> {
    let ext = dir.join("leaf.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n",
    )?;
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-subj",
            "/CN=soak-mix CA",
            "-days",
            "2",
        ],
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=localhost",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "chain.pem",
            "-days",
            "2",
            "-extfile",
            "leaf.ext",
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("running openssl (needed for the TLS certificates)")?;
        ensure!(
            out.status.success(),
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shapes_are_the_ones_the_load_program_runs() {
        // Written twice (the two programs share no crate): read the load program's list from
        // its source, so that a shape added there cannot go unchecked here.
        let source = std::fs::read_to_string(project_root().join("bench/src/bin/soak_mix.rs"))
            .expect("the load program's source");
        let list = source
            .split_once("const SHAPES: [&str; ")
            .and_then(|(_, rest)| rest.split_once("];"))
            .expect("the load program's SHAPES")
            .0;
        let theirs: Vec<&str> = list
            .lines()
            .filter_map(|l| l.trim().strip_prefix('"'))
            .filter_map(|l| l.strip_suffix("\","))
            .collect();
        assert_eq!(theirs, SHAPES);
    }

    /// A clean report: every shape, some connections each, none failed.
    const REPORT: &str = "\
shape tcp ok=10 failed=0
shape tls ok=10 failed=0
shape unix ok=10 failed=0
shape proxy_v1 ok=10 failed=0
shape tcp_half_close ok=10 failed=0
shape tcp_reset ok=10 failed=0
shape tls_reset ok=10 failed=0
shape tls_cut_handshake ok=10 failed=0
shape udp ok=10 failed=0
total ok=90 failed=0
";

    fn idle() -> Sample {
        Sample {
            rss_kib: 5000,
            fds: 14,
            threads: 4,
            tasks: 6,
            ..Sample::default()
        }
    }

    fn loaded() -> Vec<Sample> {
        let s = Sample {
            rss_kib: 7300,
            fds: 20,
            threads: 5,
            tasks: 12,
            conns: 6,
            ..Sample::default()
        };
        vec![s; 3]
    }

    #[test]
    fn the_task_line_is_read() {
        let line = TaskLine {
            alive: 12,
            conns: 3,
            panics: 1,
            accept_errors: 2,
        };
        assert_eq!(
            parse_tasks("alive=12 conns=3 panics=1 accept_errors=2"),
            Some(line)
        );
        for bad in [
            "alive=12 conns=3",
            "alive=12 conns=3 panics=0",
            "alive=x conns=1 panics=0 accept_errors=0",
            "alive=1 conns=1 panics=0 accept_errors=0 alive=2",
            "alive=1 conns=1 panics=0 accept_errors=0 other=2",
        ] {
            assert_eq!(parse_tasks(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_clean_run_is_leak_free() {
        let why = verdict(&idle(), &loaded(), &idle(), REPORT, "");
        assert!(why.is_empty(), "{why:?}");
    }

    #[test]
    fn server_panics_and_accept_errors_fail_the_run() {
        let after = Sample {
            panics: 2,
            ..idle()
        };
        assert_eq!(
            verdict(&idle(), &loaded(), &after, REPORT, ""),
            ["2 handler panics"]
        );
        let after = Sample {
            accept_errors: 1,
            ..idle()
        };
        assert_eq!(
            verdict(&idle(), &loaded(), &after, REPORT, ""),
            ["1 accept errors"]
        );
        // A panic the counts did not see yet (or outside a handler) still shows on stderr.
        let stderr = "accept: too many open files\n\
                      thread 'tokio-runtime-worker' panicked at bench/src/bin/soak_mix.rs:1:1:\n\
                      boom\n";
        assert_eq!(
            verdict(&idle(), &loaded(), &idle(), REPORT, stderr),
            ["1 `panicked at` lines on the server's stderr"]
        );
    }

    #[test]
    fn a_thread_kept_after_the_load_fails_the_run() {
        // More threads under load (the blocking pool) is fine; still more once settled is not.
        let after = Sample {
            threads: 5,
            ..idle()
        };
        assert_eq!(
            verdict(&idle(), &loaded(), &after, REPORT, ""),
            ["5 threads after, baseline 4"]
        );
        let fewer = Sample {
            threads: 3,
            ..idle()
        };
        assert!(verdict(&idle(), &loaded(), &fewer, REPORT, "").is_empty());
    }

    #[test]
    fn the_report_is_read_strictly() {
        let shapes = parse_report(REPORT).unwrap();
        assert_eq!(shapes.len(), SHAPES.len());
        assert_eq!(
            shapes[5],
            Shape {
                name: "tcp_reset".to_owned(),
                ok: 10,
                failed: 0
            }
        );
        // Once read as 0 failures: no shape lines, an unparsable count.
        assert!(parse_report("").is_err());
        assert!(parse_report("total ok=0 failed=0\n").is_err());
        let garbled = REPORT.replace("shape tls ok=10 failed=0", "shape tls ok=10 failed=x");
        assert!(parse_report(&garbled).is_err());
        let without = |prefix: &str| -> String {
            REPORT
                .lines()
                .filter(|l| !l.starts_with(prefix))
                .map(|l| format!("{l}\n"))
                .collect()
        };
        let err = parse_report(&without("shape udp")).unwrap_err();
        assert!(err.to_string().contains("udp"), "{err:#}");
        assert!(parse_report(&without("total")).is_err());
        for bad in [
            REPORT.replace("shape udp", "shape quic"),
            REPORT.replace("total ok=90", "total ok=91"),
            REPORT.replace("ok=10 failed=0\nshape udp", "failed=0\nshape udp"),
            format!("{REPORT}shape tcp ok=1 failed=0\n"),
        ] {
            assert!(parse_report(&bad).is_err(), "{bad}");
        }
        // A report that cannot be read fails the verdict, not only the parse.
        let why = verdict(&idle(), &loaded(), &idle(), "", "");
        assert!(why[0].starts_with("the load program's report"), "{why:?}");
    }

    #[test]
    fn any_failed_or_unexercised_shape_fails_the_run() {
        for shape in SHAPES {
            let failed = REPORT
                .replace(
                    &format!("shape {shape} ok=10 failed=0"),
                    &format!("shape {shape} ok=10 failed=1"),
                )
                .replace("total ok=90 failed=0", "total ok=90 failed=1");
            let why = verdict(&idle(), &loaded(), &idle(), &failed, "");
            assert_eq!(why, [format!("1 connections failed ({shape} 1)")]);
            let unexercised = REPORT
                .replace(
                    &format!("shape {shape} ok=10"),
                    &format!("shape {shape} ok=0"),
                )
                .replace("total ok=90", "total ok=80");
            let why = verdict(&idle(), &loaded(), &idle(), &unexercised, "");
            assert_eq!(why, [format!("no {shape} connection succeeded")]);
        }
    }
}
