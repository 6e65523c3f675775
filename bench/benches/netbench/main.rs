//! Network benchmarks: servers written with this library against hand-written baselines
//! (raw tokio / tokio-rustls, a hand-tuned tokio server, Go's `net` + `bufio`), under the same
//! load generator, alternating rounds.
//!
//! ```text
//! netbench [--rounds N] [--secs S] [--only ours|raw|tuned|go] [--no-go] [--go-flush idle|each]
//!          [--connect HOST:PORT] [--keep-rep-movsb] [--smoke] [--list] [--help] [SCENARIO…]
//! netbench serve --impl ours|raw|tuned|go --role ROLE [--chain PEM --key PEM] [--go-flush M]
//!                [--busy-poll MICROS]
//! ```
//!
//! For every scenario the driver starts a fresh server process per measurement, one per side (each
//! baseline the scenario has, then ours), and runs the sides in turn, rotating the order every
//! round (raw, tuned, go, ours, then tuned, go, ours, raw, …: `--rounds` of each, 3 by default;
//! with three sides or more none runs twice in a row). Each side moves one place ahead every
//! round, so when the number of rounds is a multiple of the number of sides each side runs in
//! each place equally often; otherwise a side takes some places once more than others (with 3
//! rounds of 4 sides, one side never runs first and another never last). It points
//! the load generator (in the driver's own process, plain tokio) at the server on 127.0.0.1, and
//! stops the server. It prints each side's median and spread (min–max over the rounds), the ratio
//! ours ÷ that side, and whether the ratio meets the bar of SPEC §3 / §4.6 (PASS/FAIL text only:
//! the exit status says nothing about speed). For throughput a ratio above 1 means we are faster;
//! for idle memory a ratio below 1 means we use less. Beside the rate, each side's server CPU time
//! per unit (per round trip, connection, …; the `cpu µs` column), which a shared machine's swings
//! move less: the CPU time of the measured window alone (read when it opens and when it
//! closes) ÷ the operations counted in that window.
//!
//! From 4 rounds on, a second table pairs the rounds: round `i` of ours against round `i` of each
//! other side (they ran in the same turn, seconds apart), the geometric mean of those ratios
//! and a 95% Student-t interval for it (taken on the log-ratios), and whether that interval
//! meets the bar, misses it or straddles it (`bench::paired_ratio`). On a machine whose speed
//! drifts between rounds, this says more than a ratio of medians: `--rounds 16` resolves a few
//! percent here.
//!
//! The Go baseline (`bench/go/server.go`) is built with the `go` tool when the run starts; without
//! one (or with `--no-go`) the scenarios run without it and a note says so.
//!
//! `--connect HOST:PORT` measures a server already running there (for example the
//! `sockets-server` example) instead of starting any: one side, `ext`, no ratios.
//!
//! On an AMD processor whose glibc predates the fix for glibc's bug 30994 (Debian 12's 2.36),
//! the driver runs itself again with `GLIBC_TUNABLES` set so that every process of the run
//! copies memory as a fixed glibc does there, with its vector loop instead of `rep movsb`
//! (`bench::rep_movsb_fix`; BENCHMARKS.md, "rep movsb"). Otherwise where the heap happens to
//! put rustls's buffers, in the load generator as in the servers, decides the TLS scenarios.
//! `--keep-rep-movsb`, or a `GLIBC_TUNABLES` that sets that threshold already, leaves the
//! environment as it is; other tunables already set are kept beside it.
//!
//! `--rounds` is at least 1; `--secs` is more than 0 and at most 3,600 (an hour a round).
//!
//! `--smoke` runs one short round (0.3 s measured, unless `--rounds` or `--secs` say otherwise)
//! of every scenario (or of those named) on each side but Go, the idle ones with 600 connections
//! instead of 10,000 (`idle`) or 2,000 (`tls-idle`): under a minute that proves the harness works. Its numbers mean nothing.

mod go;
mod load;
mod pki;
mod server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::load::{Outcome, Transport};
use crate::server::{Impl, Role};

/// What `--help` prints (the first lines of this file's docs).
const USAGE: &str = "\
usage: netbench [--rounds N] [--secs S] [--only ours|raw|tuned|go] [--no-go] [--go-flush idle|each]
                [--connect HOST:PORT] [--keep-rep-movsb] [--smoke] [--list] [--help] [SCENARIO...]
       netbench serve --impl ours|raw|tuned|go --role ROLE [--chain PEM --key PEM] [--go-flush M]
                [--busy-poll MICROS]
(see bench/benches/netbench/main.rs and BENCHMARKS.md; --list names the scenarios)";

/// The longest measured window `--secs` may ask for (every run is bounded in time).
const MAX_SECS: f64 = 3600.0;
/// How long a server process may take to print its port.
const START_LIMIT: Duration = Duration::from_secs(30);
/// How many connections the idle-memory scenario holds (SPEC §4.6).
const IDLE_CONNS: usize = 10_000;
/// How many it holds in a smoke run: enough for two client addresses (see `load::open_idle`),
/// few enough for a default descriptor limit of 1,024.
const SMOKE_IDLE_CONNS: usize = 600;
/// How many TLS connections the TLS idle scenario holds: modest, for the handshakes it takes
/// to set them up (a smoke run holds [`SMOKE_IDLE_CONNS`]).
const TLS_IDLE_CONNS: usize = 2_000;

/// What a scenario measures.
#[derive(Debug, Clone, Copy)]
enum Load {
    PingPong {
        conns: usize,
    },
    Pipeline {
        conns: usize,
        burst: usize,
        tls: bool,
    },
    Echo {
        conns: usize,
        tls: bool,
    },
    Handshakes {
        clients: usize,
    },
    Udp {
        clients: usize,
        size: usize,
    },
    Churn {
        clients: usize,
    },
    /// Idle connections, each greeted (through TLS 1.3 when `tls`), then silent.
    Idle {
        tls: bool,
    },
}

use bench::Bar;

/// How a bar reads in the table: `>= 0.95x` for a ratio, `<= 4096` for one of ours' figures.
fn bar_text(bar: Bar, of_ratio: bool) -> String {
    let (op, x) = match bar {
        Bar::AtLeast(x) => (">=", x),
        Bar::AtMost(x) => ("<=", x),
    };
    if of_ratio {
        format!("{op} {x:.2}x")
    } else {
        format!("{op} {x}")
    }
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    role: Role,
    load: Load,
    /// The baselines ours is compared with, each with its bar (none where SPEC sets none), in
    /// running order.
    baselines: &'static [(Impl, Option<Bar>)],
    /// A bar for ours' own figure, in the scenario's unit.
    limit: Option<Bar>,
    /// Ours' selector busy-polls for this window (`SelectorManager::with_busy_poll`, zero for
    /// off) instead of its role's default (`sockets-server`'s 200 µs for the ping-pong role,
    /// none for the others); the baselines are unchanged.
    busy_poll: Option<Duration>,
}

/// SPEC §3: bulk, TLS and UDP scenarios against raw tokio / tokio-rustls.
const RAW_ONLY: &[(Impl, Option<Bar>)] = &[(Impl::Raw, Some(Bar::AtLeast(0.95)))];
/// SPEC §4.6: the seed protocol without pipelining, ≥ 1.0× raw tokio and ≥ 1.0× Go.
const PINGPONG: &[(Impl, Option<Bar>)] = &[
    (Impl::Raw, Some(Bar::AtLeast(1.0))),
    (Impl::Go, Some(Bar::AtLeast(1.0))),
];
/// SPEC §4.6: pipelined, ≥ 4× raw tokio, ≥ 0.9× hand-tuned tokio, ≥ 1.0× Go.
const PIPELINE: &[(Impl, Option<Bar>)] = &[
    (Impl::Raw, Some(Bar::AtLeast(4.0))),
    (Impl::Tuned, Some(Bar::AtLeast(0.9))),
    (Impl::Go, Some(Bar::AtLeast(1.0))),
];
/// Pipelined over TLS, against tokio-rustls written plainly (a flush per reply) and hand-tuned
/// (one record per burst): SPEC sets no bar, so the ratios are reported without a verdict.
const TLS_PIPELINE: &[(Impl, Option<Bar>)] = &[(Impl::Raw, None), (Impl::Tuned, None)];
/// SPEC §3: idle memory ≤ 1.25× raw tokio with a `BufReader`.
const IDLE: &[(Impl, Option<Bar>)] = &[(Impl::Raw, Some(Bar::AtMost(1.25)))];
/// Short-lived connections against raw tokio: SPEC sets no bar, so the ratio is reported
/// without a verdict.
const CHURN: &[(Impl, Option<Bar>)] = &[(Impl::Raw, None)];
/// Idle TLS connections against raw tokio-rustls: SPEC sets no bar, so the ratio is reported
/// without a verdict.
const TLS_IDLE: &[(Impl, Option<Bar>)] = &[(Impl::Raw, None)];
/// Ours without busy polling (the library's default selector) against the same baselines:
/// not `sockets-server` as shipped, so SPEC's bars do not apply; the ratios are reported
/// without a verdict.
const NOBUSY_PINGPONG: &[(Impl, Option<Bar>)] = &[(Impl::Raw, None), (Impl::Go, None)];
/// As [`NOBUSY_PINGPONG`], pipelined.
const NOBUSY_PIPELINE: &[(Impl, Option<Bar>)] =
    &[(Impl::Raw, None), (Impl::Tuned, None), (Impl::Go, None)];
/// SPEC §4.6: at most 4 KiB per greeted, idle connection.
const IDLE_LIMIT: Bar = Bar::AtMost(4096.0);

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "pingpong-1",
        role: Role::PingPong,
        load: Load::PingPong { conns: 1 },
        baselines: PINGPONG,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "pingpong-50",
        role: Role::PingPong,
        load: Load::PingPong { conns: 50 },
        baselines: PINGPONG,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "pingpong-500",
        role: Role::PingPong,
        load: Load::PingPong { conns: 500 },
        baselines: PINGPONG,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "pipeline-1",
        role: Role::PingPong,
        load: Load::Pipeline {
            conns: 1,
            burst: load::BURST,
            tls: false,
        },
        baselines: PIPELINE,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "pipeline-50",
        role: Role::PingPong,
        load: Load::Pipeline {
            conns: 50,
            burst: load::BURST,
            tls: false,
        },
        baselines: PIPELINE,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "pipeline-500",
        role: Role::PingPong,
        load: Load::Pipeline {
            conns: 500,
            burst: load::BURST,
            tls: false,
        },
        baselines: PIPELINE,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "tls-pipeline-50",
        role: Role::TlsPingPong,
        load: Load::Pipeline {
            conns: 50,
            burst: load::BURST,
            tls: true,
        },
        baselines: TLS_PIPELINE,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "echo-1",
        role: Role::Echo,
        load: Load::Echo {
            conns: 1,
            tls: false,
        },
        baselines: RAW_ONLY,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "echo-16",
        role: Role::Echo,
        load: Load::Echo {
            conns: 16,
            tls: false,
        },
        baselines: RAW_ONLY,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "tls-echo",
        role: Role::TlsEcho,
        load: Load::Echo {
            conns: 1,
            tls: true,
        },
        baselines: RAW_ONLY,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "tls-handshake",
        role: Role::TlsHandshake,
        load: Load::Handshakes { clients: 4 },
        baselines: RAW_ONLY,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "udp-64",
        role: Role::Udp,
        load: Load::Udp {
            clients: 16,
            size: 64,
        },
        baselines: RAW_ONLY,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "udp-1400",
        role: Role::Udp,
        load: Load::Udp {
            clients: 16,
            size: 1400,
        },
        baselines: RAW_ONLY,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "churn-50",
        role: Role::PingPong,
        load: Load::Churn { clients: 50 },
        baselines: CHURN,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "idle",
        role: Role::PingPong,
        load: Load::Idle { tls: false },
        baselines: IDLE,
        limit: Some(IDLE_LIMIT),
        busy_poll: None,
    },
    Scenario {
        name: "tls-idle",
        role: Role::TlsHandshake,
        load: Load::Idle { tls: true },
        baselines: TLS_IDLE,
        limit: None,
        busy_poll: None,
    },
    Scenario {
        name: "nobusy-pingpong-1",
        role: Role::PingPong,
        load: Load::PingPong { conns: 1 },
        baselines: NOBUSY_PINGPONG,
        limit: None,
        busy_poll: Some(Duration::ZERO),
    },
    Scenario {
        name: "nobusy-pingpong-50",
        role: Role::PingPong,
        load: Load::PingPong { conns: 50 },
        baselines: NOBUSY_PINGPONG,
        limit: None,
        busy_poll: Some(Duration::ZERO),
    },
    Scenario {
        name: "nobusy-pingpong-500",
        role: Role::PingPong,
        load: Load::PingPong { conns: 500 },
        baselines: NOBUSY_PINGPONG,
        limit: None,
        busy_poll: Some(Duration::ZERO),
    },
    Scenario {
        name: "nobusy-churn-50",
        role: Role::PingPong,
        load: Load::Churn { clients: 50 },
        baselines: CHURN,
        limit: None,
        busy_poll: Some(Duration::ZERO),
    },
    Scenario {
        name: "nobusy-pipeline-1",
        role: Role::PingPong,
        load: Load::Pipeline {
            conns: 1,
            burst: load::BURST,
            tls: false,
        },
        baselines: NOBUSY_PIPELINE,
        limit: None,
        busy_poll: Some(Duration::ZERO),
    },
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return server::main(&args[1..]);
    }
    // `None`: not given, so the default (or `--smoke`'s) applies.
    let mut rounds: Option<usize> = None;
    let mut secs: Option<f64> = None;
    let mut warmup = 0.3;
    let mut names = Vec::new();
    let mut only = None;
    let mut use_go = true;
    let mut go_flush = go::Flush::Idle;
    let mut connect = None;
    let mut smoke = false;
    let mut keep_rep_movsb = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            "--list" => {
                for s in SCENARIOS {
                    println!("{}", s.name);
                }
                return Ok(());
            }
            "--rounds" => {
                let v = it.next().context("--rounds N")?;
                rounds = Some(
                    v.parse()
                        .with_context(|| format!("--rounds {v}: not a whole number"))?,
                );
            }
            "--secs" => {
                let v = it.next().context("--secs S")?;
                secs = Some(
                    v.parse()
                        .with_context(|| format!("--secs {v}: not a number"))?,
                );
            }
            "--only" => only = Some(Impl::parse(it.next().context("--only IMPL")?)?),
            "--no-go" => use_go = false,
            "--go-flush" => go_flush = go::Flush::parse(it.next().context("--go-flush M")?)?,
            "--connect" => {
                let addr = it.next().context("--connect HOST:PORT")?;
                connect = Some(
                    addr.parse::<SocketAddr>()
                        .with_context(|| format!("--connect {addr}: not an address"))?,
                );
            }
            "--smoke" => smoke = true,
            "--keep-rep-movsb" => keep_rep_movsb = true,
            // `cargo bench` passes it to a `harness = false` bench target.
            "--bench" => {}
            name if !name.starts_with('-') => names.push(name.to_owned()),
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    // `--smoke` shortens the defaults; a `--rounds` or `--secs` given with it still counts.
    let (rounds, secs) = if smoke {
        warmup = 0.1;
        use_go = false;
        (rounds.unwrap_or(1), secs.unwrap_or(0.3))
    } else {
        (rounds.unwrap_or(3), secs.unwrap_or(2.0))
    };
    let chosen: Vec<&Scenario> = if names.is_empty() {
        SCENARIOS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| {
                SCENARIOS
                    .iter()
                    .find(|s| s.name == n)
                    .with_context(|| format!("unknown scenario {n} (try --list)"))
            })
            .collect::<Result<_>>()?
    };
    ensure!(
        rounds >= 1 && secs > 0.0,
        "need at least one round of some length"
    );
    ensure!(
        secs <= MAX_SECS,
        "--secs {secs}: at most {MAX_SECS} s a round"
    );
    ensure!(
        connect.is_none() || chosen.iter().all(|s| !matches!(s.load, Load::Idle { .. })),
        "the idle scenario measures only servers netbench starts (not with --connect)"
    );
    // The idle scenario reads the server's RSS. It once read the started process's, which under
    // a wrapper that forks was the wrapper's (`timeout 600` scored 0 bytes/conn, PASS); it now
    // reads the pid the server announces, but a profiler can still change the memory it
    // measures (valgrind runs the server inside its own), and a server too old to announce its
    // pid would be read through the wrapper again: keep the two apart.
    ensure!(
        std::env::var("NETBENCH_WRAP")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .is_none()
            || chosen.iter().all(|s| !matches!(s.load, Load::Idle { .. })),
        "the idle scenario measures the server process's own memory: run it without \
         NETBENCH_WRAP"
    );
    // Every process of the run (the load generator here, each server it starts) copies memory
    // as a glibc with the fix for its bug 30994 does: see `bench::rep_movsb_fix`.
    if !keep_rep_movsb {
        match rep_movsb_fix() {
            Ok(None) => {}
            Ok(Some(tunable)) => {
                let existing = std::env::var("GLIBC_TUNABLES").ok();
                if let Some(tunables) = bench::with_tunable(existing.as_deref(), &tunable) {
                    use std::os::unix::process::CommandExt as _;
                    // `exec` returns only when it failed.
                    let e = match std::env::current_exe() {
                        Ok(me) => Command::new(me)
                            .args(&args)
                            .env("GLIBC_TUNABLES", &tunables)
                            .exec(),
                        Err(e) => e,
                    };
                    println!(
                        "netbench: could not run again with GLIBC_TUNABLES={tunables} ({e}); \
                         glibc's rep movsb threshold left as it is"
                    );
                }
            }
            Err(why) => {
                println!("netbench: {why}; glibc's rep movsb threshold left as it is");
            }
        }
    }
    let dir = TempDir(std::env::temp_dir().join(format!("netbench-{}", std::process::id())));
    let wants_go = connect.is_none()
        && chosen
            .iter()
            .any(|s| s.baselines.iter().any(|(i, _)| *i == Impl::Go))
        && only.is_none_or(|o| o == Impl::Go);
    let go = if !wants_go {
        GoState::Unused
    } else if !use_go {
        GoState::Skipped(if smoke {
            "left out of --smoke".to_owned()
        } else {
            "--no-go".to_owned()
        })
    } else {
        match go::build(&dir.0.join("go")) {
            Ok(Some(server)) => GoState::Ready(server),
            Ok(None) => GoState::Skipped(
                "no `go` tool found (Debian: apt-get install golang-go; or set NETBENCH_GO)"
                    .to_owned(),
            ),
            Err(e) => GoState::Skipped(format!("{e:#}")),
        }
    };
    let cfg = Config {
        rounds,
        only,
        secs: Duration::from_secs_f64(secs),
        warmup: Duration::from_secs_f64(warmup),
        pki: pki::Pki::create(&dir.0)?,
        go,
        go_flush,
        connect,
        idle_conns: if smoke { SMOKE_IDLE_CONNS } else { IDLE_CONNS },
    };
    println!(
        "netbench: {} CPU(s), load average {}; {rounds} round(s) per side, order rotated each \
         round, {secs} s measured after {warmup} s warm-up; server and load generator share the \
         machine",
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(tunables) = std::env::var_os("GLIBC_TUNABLES") {
        let tunables = tunables.to_string_lossy();
        let why = if tunables.contains("x86_rep_movsb_threshold") {
            " (BENCHMARKS.md, \"rep movsb\"; --keep-rep-movsb leaves glibc's default)"
        } else {
            ""
        };
        println!("netbench: GLIBC_TUNABLES={tunables} for every process{why}");
    }
    match &cfg.go {
        GoState::Unused => {}
        GoState::Ready(server) => println!(
            "netbench: Go baseline: {} ({}), -flush {}",
            server.path.display(),
            server.version,
            cfg.go_flush.name()
        ),
        GoState::Skipped(why) => println!("netbench: Go baseline skipped: {why}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for scenario in chosen {
        println!("==> {}", scenario.name);
        rows.push(run_scenario(&rt, &cfg, scenario)?);
    }
    print_table(&cfg, &rows);
    Ok(())
}

/// A folder removed when the run ends.
#[derive(Debug)]
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether this run has a Go baseline.
#[derive(Debug)]
enum GoState {
    /// No chosen scenario has one.
    Unused,
    Ready(go::GoServer),
    /// Why not.
    Skipped(String),
}

#[derive(Debug)]
struct Config {
    rounds: usize,
    /// Run one side only (for profiling).
    only: Option<Impl>,
    secs: Duration,
    warmup: Duration,
    pki: pki::Pki,
    go: GoState,
    go_flush: go::Flush,
    /// Measure a server already running here instead of starting any.
    connect: Option<SocketAddr>,
    /// How many connections the idle scenario holds.
    idle_conns: usize,
}

/// What one measurement runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// A server process the driver starts.
    Server(Impl),
    /// A server someone else started (`--connect`).
    External(SocketAddr),
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Server(imp) => imp.name(),
            Side::External(_) => "ext",
        }
    }
}

/// One scenario's results.
#[derive(Debug)]
struct Row {
    name: &'static str,
    unit: &'static str,
    /// Whether the latencies are per burst of pipelined requests.
    per_burst: bool,
    /// The bar for ours' own figure.
    limit: Option<Bar>,
    /// Ours, when it ran.
    ours: Option<Summary>,
    /// Every other side that ran or was skipped, in the scenario's order.
    others: Vec<Other>,
}

#[derive(Debug)]
struct Other {
    label: &'static str,
    bar: Option<Bar>,
    /// The results, or why there are none.
    result: Result<Summary, String>,
    /// Ours against this side round by round, from [`MIN_PAIRED_ROUNDS`] rounds on.
    paired: Option<bench::PairedRatio>,
}

/// The fewest rounds from which the table's paired-rounds section reports a scenario: with
/// fewer, the Student-t interval is too wide to resolve anything (its factor is 12.7 standard
/// errors with two rounds, 4.3 with three, against 3.2 with four).
const MIN_PAIRED_ROUNDS: usize = 4;

/// One side's rounds.
#[derive(Debug, Clone, Copy)]
struct Summary {
    median: Stat,
    min: f64,
    max: f64,
    /// The median over the rounds of the server's CPU time per unit, in µs (see
    /// [`cpu_per_unit`]).
    cpu_per_unit: Option<f64>,
    /// The same for its user time alone (see [`user_per_unit`]).
    user_per_unit: Option<f64>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stat {
    value: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
    /// The server process's CPU time over the measured window (read when it opens and when it
    /// closes: not the setup, the warm-up or the teardown) ÷ the window's length: how many
    /// cores it kept busy while the operations the rate counts ran (a server netbench started;
    /// not the idle scenarios).
    cores: Option<f64>,
    /// The part of `cores` the server's own code ran (user time): where servers built on the
    /// same runtime and system calls differ.
    user_cores: Option<f64>,
}

fn run_scenario(rt: &tokio::runtime::Runtime, cfg: &Config, s: &Scenario) -> Result<Row> {
    let sides: Vec<Side> = match cfg.connect {
        Some(addr) => vec![Side::External(addr)],
        None => s
            .baselines
            .iter()
            .map(|(imp, _)| *imp)
            .chain([Impl::Ours])
            .filter(|imp| *imp != Impl::Go || matches!(cfg.go, GoState::Ready(_)))
            .filter(|imp| cfg.only.is_none_or(|only| only == *imp))
            .map(Side::Server)
            .collect(),
    };
    if sides.is_empty() {
        println!("    (no side to run: this scenario has no such server, or Go was skipped)");
    }
    let mut samples: Vec<(Side, Vec<Stat>)> = sides.iter().map(|side| (*side, vec![])).collect();
    for round in 0..cfg.rounds {
        for side in bench::round_order(&sides, round) {
            let stat = measure(rt, cfg, s, side)?;
            println!(
                "    round {} {:<5} {:>14} {}{}",
                round + 1,
                side.label(),
                fmt_value(stat.value),
                unit(s.load),
                match (stat.p50, stat.p99) {
                    (Some(a), Some(b)) => format!("  p50 {} p99 {}", fmt_dur(a), fmt_dur(b)),
                    _ => String::new(),
                } + &stat
                    .cores
                    .map(|c| format!("  server cpu {c:.2}"))
                    .unwrap_or_default()
                    + &cpu_per_unit(&stat)
                        .zip(user_per_unit(&stat))
                        .map(|(us, user)| {
                            format!(" ({us:.2} µs/{}, user {user:.2})", units(s.load).1)
                        })
                        .unwrap_or_default()
            );
            if let Some((_, v)) = samples.iter_mut().find(|(x, _)| *x == side) {
                v.push(stat);
            }
        }
    }
    let rounds_of = |side: Side| samples.iter().find(|(x, _)| *x == side).map(|(_, v)| v);
    let summary = |side: Side| rounds_of(side).map(|v| summarize(v));
    // Round `i` of every side ran in the same turn of the loop above, so `i` pairs them.
    let paired = |side: Side| {
        let values = |v: &Vec<Stat>| v.iter().map(|s| s.value).collect::<Vec<_>>();
        let ours = rounds_of(Side::Server(Impl::Ours))?;
        let theirs = rounds_of(side)?;
        (ours.len().min(theirs.len()) >= MIN_PAIRED_ROUNDS)
            .then(|| bench::paired_ratio(&values(ours), &values(theirs)))
            .flatten()
    };
    let ours = summary(Side::Server(Impl::Ours));
    let mut others = Vec::new();
    match cfg.connect {
        Some(addr) => others.push(Other {
            label: "ext",
            bar: None,
            result: summary(Side::External(addr)).ok_or_else(String::new),
            paired: None,
        }),
        None => {
            for (imp, bar) in s.baselines {
                let result = match summary(Side::Server(*imp)) {
                    Some(sum) => Ok(sum),
                    None if cfg.only.is_some() => continue,
                    None => Err(match &cfg.go {
                        GoState::Skipped(why) => format!("skipped: {why}"),
                        _ => "skipped".to_owned(),
                    }),
                };
                others.push(Other {
                    label: imp.name(),
                    bar: *bar,
                    result,
                    paired: paired(Side::Server(*imp)),
                });
            }
        }
    }
    Ok(Row {
        name: s.name,
        unit: unit(s.load),
        per_burst: matches!(s.load, Load::Pipeline { .. }),
        limit: s.limit,
        ours,
        others,
    })
}

fn unit(load: Load) -> &'static str {
    units(load).0
}

/// `load`'s unit as the table shows it (`round trips/s`), and one of what it counts, for
/// [`cpu_per_unit`] (`round trip`).
fn units(load: Load) -> (&'static str, &'static str) {
    match load {
        Load::PingPong { .. } => ("round trips/s", "round trip"),
        Load::Pipeline { .. } => ("requests/s", "request"),
        Load::Echo { .. } => ("MB/s", "MB"),
        Load::Handshakes { .. } => ("handshakes/s", "handshake"),
        Load::Udp { .. } => ("datagrams/s", "datagram"),
        Load::Churn { .. } => ("connections/s", "connection"),
        Load::Idle { .. } => ("bytes/conn", "connection"),
    }
}

fn summarize(v: &[Stat]) -> Summary {
    // The median of the rounds' latencies; `None` when the rounds recorded none.
    fn med(mut xs: Vec<Duration>) -> Option<Duration> {
        (!xs.is_empty()).then(|| bench::median(&mut xs))
    }
    let values = v.iter().map(|s| s.value);
    Summary {
        median: Stat {
            value: bench::median_of(&values.clone().collect::<Vec<_>>()).unwrap_or_default(),
            p50: med(v.iter().filter_map(|s| s.p50).collect()),
            p99: med(v.iter().filter_map(|s| s.p99).collect()),
            cores: None,
            user_cores: None,
        },
        min: values.clone().fold(f64::INFINITY, f64::min),
        max: values.fold(f64::NEG_INFINITY, f64::max),
        cpu_per_unit: bench::median_of(&v.iter().filter_map(cpu_per_unit).collect::<Vec<_>>()),
        user_per_unit: bench::median_of(&v.iter().filter_map(user_per_unit).collect::<Vec<_>>()),
    }
}

/// The server's CPU time (user and system) over the measured window ÷ the operations counted in
/// that window (round trips, connections, datagrams, MB), in µs: what one of them cost the
/// server. Both cover the window only (see [`Stat::cores`]), so the setup, the warm-up and the
/// teardown neither add CPU time nor go uncounted.
/// Steadier than the rate itself on a machine the server shares with the load generator and
/// others; `None` where the round measured no CPU time (an external server, the idle
/// scenarios).
fn cpu_per_unit(stat: &Stat) -> Option<f64> {
    per_unit(stat.cores, stat.value)
}

/// As [`cpu_per_unit`], the server's user time alone: the time its own code (the library, the
/// runtime, the program) ran per unit, without the kernel's (the system calls and the network
/// stack's work they do, which servers making the same calls share).
fn user_per_unit(stat: &Stat) -> Option<f64> {
    per_unit(stat.user_cores, stat.value)
}

fn per_unit(cores: Option<f64>, value: f64) -> Option<f64> {
    cores
        .filter(|_| value > 0.0)
        .map(|cores| cores / value * 1e6)
}

/// A running server process; stopped when dropped.
struct ServerProcess {
    /// The process the driver started: the server, or the `NETBENCH_WRAP` program running it.
    child: Child,
    /// The server's own process id, as it announced it (the child's with a server that did not
    /// say): what its CPU time and memory are read from, so that under a wrapper they are the
    /// server's, not the wrapper's.
    pid: u32,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(
        cfg: &Config,
        imp: Impl,
        role: Role,
        busy_poll: Option<Duration>,
    ) -> Result<ServerProcess> {
        // The Go server is its own executable; every other one is this program's `serve`.
        let (exe, args): (PathBuf, Vec<std::ffi::OsString>) = match (imp, &cfg.go) {
            (Impl::Go, GoState::Ready(server)) => (
                server.path.clone(),
                vec!["-flush".into(), cfg.go_flush.name().into()],
            ),
            (Impl::Go, _) => bail!("no Go server was built"),
            _ => {
                let mut args: Vec<std::ffi::OsString> = vec![
                    "serve".into(),
                    "--impl".into(),
                    imp.name().into(),
                    "--role".into(),
                    role.name().into(),
                    "--chain".into(),
                    cfg.pki.chain.clone().into(),
                    "--key".into(),
                    cfg.pki.key.clone().into(),
                ];
                if let Some(window) = busy_poll {
                    args.extend(["--busy-poll".into(), window.as_micros().to_string().into()]);
                }
                (std::env::current_exe()?, args)
            }
        };
        // `NETBENCH_WRAP="strace -c -o FILE"` (say) runs the server under a profiler (not for
        // the idle scenario, which reads the started process's memory).
        let wrap = std::env::var("NETBENCH_WRAP").unwrap_or_default();
        let mut wrap = wrap.split_whitespace();
        let mut cmd = match wrap.next() {
            Some(program) => {
                let mut cmd = Command::new(program);
                cmd.args(wrap).arg(exe);
                cmd
            }
            None => Command::new(exe),
        };
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("starting the server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        // Read the first line on a thread of its own, so that a server that never prints it
        // cannot stall the run: after `START_LIMIT` it is killed (which ends the thread's read).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = tx.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
        });
        let line = match rx.recv_timeout(START_LIMIT) {
            Ok(line) => line?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not print its port within {START_LIMIT:?}");
            }
        };
        let Some(said) = bench::Announcement::parse(&line) else {
            let _ = child.kill();
            let _ = child.wait();
            bail!("server said {line:?}, not `PORT <port> PID <pid>`");
        };
        Ok(ServerProcess {
            pid: said.pid.unwrap_or_else(|| child.id()),
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], said.port)),
        })
    }

    /// The CPU time the server process has used so far: user and system together, and user
    /// alone.
    fn cpu(&self) -> Result<(Duration, Duration)> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let (user, system) =
            net_tests::probe::stat_times(&stat).context("no CPU times in /proc/PID/stat")?;
        let tick = net_tests::probe::CLOCK_TICK;
        Ok((
            tick * u32::try_from(user + system)?,
            tick * u32::try_from(user)?,
        ))
    }

    /// The server's resident set size (`VmRSS`), in bytes.
    fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        let kib: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS")?;
        Ok(kib * 1024)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // Closing its stdin makes the server exit (a profiler wrapping it then writes its
        // report); kill it if it does not within two seconds.
        drop(self.child.stdin.take());
        for _ in 0..200 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn measure(rt: &tokio::runtime::Runtime, cfg: &Config, s: &Scenario, side: Side) -> Result<Stat> {
    let (server, addr) = match side {
        Side::Server(imp) => {
            let busy_poll = s.busy_poll.filter(|_| imp == Impl::Ours);
            let server = ServerProcess::start(cfg, imp, s.role, busy_poll)?;
            let addr = server.addr;
            (Some(server), addr)
        }
        Side::External(addr) => (None, addr),
    };
    let (warmup, secs) = (cfg.warmup, cfg.secs);
    let limit = warmup + secs + Duration::from_secs(30);
    let throughput = |o: Outcome, value: f64| -> Stat {
        if o.lost > 0 {
            println!("    ({} datagrams lost)", o.lost);
        }
        Stat {
            value,
            p50: Some(o.p50),
            p99: Some(o.p99),
            cores: None,
            user_cores: None,
        }
    };
    // The load tells us its measured window once it has one (after setting its connections up);
    // the server's CPU time is read when that window opens and when it closes, so that the
    // CPU figures cover the operations the rate counts and nothing else (not the setup, the
    // warm-up or the teardown).
    let (report, window) = tokio::sync::oneshot::channel::<load::Window>();
    let window_cpu = async {
        let window = window.await.ok()?;
        let server = server.as_ref()?;
        tokio::time::sleep_until(window.start.into()).await;
        let start = server.cpu().ok()?;
        tokio::time::sleep_until(window.end.into()).await;
        let end = server.cpu().ok()?;
        Some((start, end, window.end - window.start))
    };
    // The load generator's clients: TLS ones trust the run's CA.
    let transport = |tls: bool| -> Result<Transport> {
        Ok(if tls {
            Transport::Tls(tokio_rustls::TlsConnector::from(pki::client_config(
                &cfg.pki.ca,
            )?))
        } else {
            Transport::Tcp
        })
    };
    let (stat, cpu) = rt.block_on(async {
        let run = async {
            Ok::<_, anyhow::Error>(match s.load {
                Load::PingPong { conns } => {
                    let o = load::pingpong(addr, conns, warmup, secs, report).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Pipeline { conns, burst, tls } => {
                    let transport = transport(tls)?;
                    let o =
                        load::pipeline(addr, conns, burst, transport, warmup, secs, report).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Echo { conns, tls } => {
                    let transport = transport(tls)?;
                    let o = load::echo(addr, conns, transport, warmup, secs, report).await?;
                    throughput(o, o.bytes_per_sec / 1e6)
                }
                Load::Handshakes { clients } => {
                    let connector =
                        tokio_rustls::TlsConnector::from(pki::client_config(&cfg.pki.ca)?);
                    let o =
                        load::handshakes(addr, clients, connector, warmup, secs, report).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Udp { clients, size } => {
                    let o = load::udp(addr, clients, size, warmup, secs, report).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Churn { clients } => {
                    let o = load::churn(addr, clients, warmup, secs, report).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Idle { tls } => {
                    let server = server
                        .as_ref()
                        .context("the idle scenario measures only servers netbench starts")?;
                    let conns = if tls {
                        cfg.idle_conns.min(TLS_IDLE_CONNS)
                    } else {
                        cfg.idle_conns
                    };
                    check_descriptor_limit(conns)?;
                    // Let the server settle, then measure before and after.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let before = server.rss()?;
                    let streams: Box<dyn std::any::Any> = if tls {
                        let connector =
                            tokio_rustls::TlsConnector::from(pki::client_config(&cfg.pki.ca)?);
                        Box::new(load::open_tls_idle(addr, conns, connector).await?)
                    } else {
                        Box::new(load::open_idle(addr, conns).await?)
                    };
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let after = server.rss()?;
                    let value = (after.saturating_sub(before)) as f64 / conns as f64;
                    // The clients close first, so TIME_WAIT stays on their side; every round's
                    // server listens on a new port, so no address pair repeats.
                    drop(streams);
                    Stat {
                        value,
                        p50: None,
                        p99: None,
                        cores: None,
                        user_cores: None,
                    }
                }
            })
        };
        // Both run to the end: the CPU reader stops at the window's end (or at once when the
        // load fails before it has a window), which comes before the load's time limit.
        let (stat, cpu) = tokio::join!(tokio::time::timeout(limit, run), window_cpu);
        let stat = stat.context("the run overran its time limit")??;
        Ok::<_, anyhow::Error>((stat, cpu))
    })?;
    let mut stat = stat;
    // Over the window only: divided by the window's length, `cores ÷ value` (see `per_unit`)
    // is the window's CPU time ÷ the operations counted in it. (The idle scenarios, without
    // latencies, measure memory, not CPU.)
    if let Some((start, end, length)) = cpu.filter(|_| stat.p50.is_some()) {
        let length = length.as_secs_f64();
        stat.cores = Some((end.0 - start.0).as_secs_f64() / length);
        stat.user_cores = Some((end.1 - start.1).as_secs_f64() / length);
    }
    drop(server);
    Ok(stat)
}

/// The idle scenario needs more than `conns` descriptors in each process.
fn check_descriptor_limit(conns: usize) -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: Option<u64> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok());
    if let Some(soft) = soft {
        ensure!(
            soft as usize > conns + 100,
            "the idle scenario needs more than {} open files (soft limit is {soft}); \
             raise it with `ulimit -n 20000`",
            conns + 100
        );
    }
    Ok(())
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// `1234567.8` as `1,234,568`; values under 1,000 keep one decimal.
fn fmt_value(v: f64) -> String {
    if !v.is_finite() || v < 1000.0 {
        return format!("{v:.1}");
    }
    let digits = format!("{v:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The paired-rounds section: ours against each side round by round, with an interval, and
/// where that interval lies against the bar. Nothing when no scenario ran enough rounds.
fn print_paired(rows: &[Row]) {
    let paired: Vec<_> = rows
        .iter()
        .flat_map(|r| r.others.iter().map(move |o| (r.name, o)))
        .filter_map(|(name, o)| o.paired.map(|p| (name, o, p)))
        .collect();
    if paired.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<13} {:<5} {:>8}  {:<15} {:>6}  {:<9} the interval",
        "paired", "side", "ours÷it", "95% interval", "rounds", "bar"
    );
    let mut name = "";
    for (row, other, p) in paired {
        let (bar, verdict) = match other.bar {
            Some(bar) => (
                bar_text(bar, true),
                match p.against(bar) {
                    bench::Resolved::Met => "meets the bar",
                    bench::Resolved::Missed => "misses the bar",
                    bench::Resolved::Unresolved => "straddles the bar",
                },
            ),
            None => (String::new(), ""),
        };
        println!(
            "{:<13} {:<5} {:>8}  {:<15} {:>6}  {:<9} {}",
            if row == name { "" } else { row },
            other.label,
            format!("{:.3}x", p.geomean),
            format!("{:.3}–{:.3}", p.low, p.high),
            p.pairs,
            bar,
            verdict
        );
        name = row;
    }
    println!(
        "paired: ours ÷ that side within each round (the two ran in the same turn, seconds \
         apart, so a machine whose speed drifts between rounds moves both). ours÷it: the \
         geometric mean of those ratios; 95% interval: the 95% Student-t interval of the \
         geometric mean of the paired ratios (taken on their logarithms); from \
         {MIN_PAIRED_ROUNDS} rounds on. Where the interval straddles a bar, more rounds may \
         tell; the table's PASS/FAIL compares medians."
    );
}

fn print_table(cfg: &Config, rows: &[Row]) {
    let lat = |s: &Stat| match (s.p50, s.p99) {
        (Some(a), Some(b)) => format!("{} / {}", fmt_dur(a), fmt_dur(b)),
        _ => "-".to_owned(),
    };
    let spread = |s: &Summary| format!("{}–{}", fmt_value(s.min), fmt_value(s.max));
    let cpu = |s: &Summary| {
        s.cpu_per_unit
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.2}"))
    };
    let user = |s: &Summary| {
        s.user_per_unit
            .map_or_else(|| "-".to_owned(), |us| format!("{us:.2}"))
    };
    println!();
    println!(
        "{:<13} {:<5} {:>12} {:<25} {:<21} {:>8}  {:<9} {:<7} {:>9} {:>8}  unit",
        "scenario",
        "side",
        "median",
        "min–max",
        "p50 / p99",
        "ours÷it",
        "bar",
        "verdict",
        "cpu µs",
        "user µs"
    );
    for r in rows {
        let mut name = r.name;
        if let Some(ours) = &r.ours {
            let (bar_text, verdict) = match r.limit {
                Some(bar) => (
                    bar_text(bar, false),
                    if bar.met(ours.median.value) {
                        "PASS"
                    } else {
                        "FAIL"
                    },
                ),
                None => (String::new(), ""),
            };
            println!(
                "{:<13} {:<5} {:>12} {:<25} {:<21} {:>8}  {:<9} {:<7} {:>9} {:>8}  {}",
                name,
                "ours",
                fmt_value(ours.median.value),
                spread(ours),
                lat(&ours.median),
                "",
                bar_text,
                verdict,
                cpu(ours),
                user(ours),
                r.unit
            );
            name = "";
        }
        for other in &r.others {
            match &other.result {
                Ok(sum) => {
                    let ratio = r
                        .ours
                        .as_ref()
                        .map(|o| bench::ratio(o.median.value, sum.median.value));
                    let (ratio_text, bar_text, verdict) = match (ratio, other.bar) {
                        (Some(x), Some(bar)) => (
                            format!("{x:.3}x"),
                            bar_text(bar, true),
                            if bar.met(x) { "PASS" } else { "FAIL" },
                        ),
                        (Some(x), None) => (format!("{x:.3}x"), String::new(), ""),
                        (None, _) => (String::new(), String::new(), ""),
                    };
                    println!(
                        "{:<13} {:<5} {:>12} {:<25} {:<21} {:>8}  {:<9} {:<7} {:>9} {:>8}  {}",
                        name,
                        other.label,
                        fmt_value(sum.median.value),
                        spread(sum),
                        lat(&sum.median),
                        ratio_text,
                        bar_text,
                        verdict,
                        cpu(sum),
                        user(sum),
                        r.unit
                    );
                }
                Err(why) => println!("{:<13} {:<5} {:>12} {why}", name, other.label, "-"),
            }
            name = "";
        }
    }
    println!();
    println!(
        "median and min–max over {} round(s) per side; ours÷it = ours ÷ that side's median. \
         Throughput: higher is better; bytes/conn: lower is better. cpu µs: the server's CPU \
         time (user and system) in the measured window per unit counted in it (per round trip, \
         connection, datagram, MB, ...; setup, warm-up and teardown left out), median over the \
         rounds: lower is better, and steadier than the rate where the server shares the \
         machine. user µs: the part of it the server's own code ran (the library, the \
         runtime, the program), without the kernel's system calls and network stack. The \
         kernel splits CPU time into user and system by sampling at each 10 ms tick: where \
         user time is a tenth of the total, one round's figure can be a fifth off, and only the \
         median of many rounds says much.",
        cfg.rounds
    );
    if rows.iter().any(|r| r.per_burst) {
        println!(
            "pipeline-*: {} requests per burst; requests/s counts requests, p50 / p99 are per \
             burst (its write to its last reply).",
            load::BURST
        );
    }
    if rows
        .iter()
        .any(|r| r.unit == unit(Load::Churn { clients: 0 }))
    {
        println!(
            "churn-*: one connection = connect, greeting, one request and its answer, client's \
             close; p50 / p99 are per connection (connect to answer); SPEC sets no bar."
        );
    }
    println!(
        "Bars: SPEC §3 (>= 0.95x raw; idle <= 1.25x raw) and §4.6 (pingpong >= 1.0x raw and go; \
         pipeline >= 4x raw, >= 0.9x tuned, >= 1.0x go; §4.6 states the raw and tuned pipeline \
         bars at 50 connections; idle <= 4096 bytes/conn for ours, the bar on its own row; \
         tls-idle has none). \
         PASS/FAIL is reported, never the exit status."
    );
    print_paired(rows);
}

/// The tunable that [`bench::rep_movsb_fix`] finds this machine needs: `Ok(None)` but on an
/// AMD processor whose glibc lacks the fix (on x86-64 Linux with glibc); an error where
/// `ld.so --list-tunables` does not say.
fn rep_movsb_fix() -> Result<Option<String>, String> {
    const LD_SO: &str = "/lib64/ld-linux-x86-64.so.2";
    if !cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    )) {
        return Ok(None);
    }
    let amd = std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|cpus| {
        cpus.lines()
            .any(|line| line.starts_with("vendor_id") && line.ends_with("AuthenticAMD"))
    });
    if !amd {
        return Ok(None);
    }
    let listed = Command::new(LD_SO)
        .arg("--list-tunables")
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("`{LD_SO} --list-tunables`: {e}"))?;
    bench::rep_movsb_fix(&String::from_utf8_lossy(&listed.stdout))
}
