//! Network benchmarks: servers written with this library against hand-written raw tokio /
//! tokio-rustls baselines, under the same load generator, alternating rounds.
//!
//! ```text
//! netbench [--rounds N] [--secs S] [--only ours|raw] [--smoke] [--list] [SCENARIO…]
//! netbench serve --impl ours|raw --role ROLE [--chain PEM --key PEM]   (spawned by the driver)
//! ```
//!
//! For every scenario the driver starts a fresh server process per measurement, alternating
//! the baseline and ours (baseline, ours, ours, baseline, …: `--rounds` of each, 3 by default,
//! neither side always first), points the load generator (in
//! the driver's own process, plain tokio) at it on 127.0.0.1, and stops the server. It prints
//! the median of each side and the ratio ours ÷ baseline. For throughput a ratio above 1 means
//! we are faster; for idle memory a ratio below 1 means we use less.
//!
//! `--smoke` runs one short round of `pingpong-1` on each side: a few seconds that prove the
//! harness works.

mod load;
mod pki;
mod server;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};

use crate::load::{Outcome, Transport};
use crate::server::{Impl, Role};

/// How many connections the idle-memory scenario holds.
const IDLE_CONNS: usize = 10_000;

/// What a scenario measures.
#[derive(Debug, Clone, Copy)]
enum Load {
    PingPong { conns: usize },
    Echo { conns: usize, tls: bool },
    Handshakes { clients: usize },
    Udp { clients: usize, size: usize },
    Idle,
}

#[derive(Debug)]
struct Scenario {
    name: &'static str,
    role: Role,
    load: Load,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "pingpong-1",
        role: Role::PingPong,
        load: Load::PingPong { conns: 1 },
    },
    Scenario {
        name: "pingpong-50",
        role: Role::PingPong,
        load: Load::PingPong { conns: 50 },
    },
    Scenario {
        name: "pingpong-500",
        role: Role::PingPong,
        load: Load::PingPong { conns: 500 },
    },
    Scenario {
        name: "echo-1",
        role: Role::Echo,
        load: Load::Echo {
            conns: 1,
            tls: false,
        },
    },
    Scenario {
        name: "echo-16",
        role: Role::Echo,
        load: Load::Echo {
            conns: 16,
            tls: false,
        },
    },
    Scenario {
        name: "tls-echo",
        role: Role::TlsEcho,
        load: Load::Echo {
            conns: 1,
            tls: true,
        },
    },
    Scenario {
        name: "tls-handshake",
        role: Role::TlsHandshake,
        load: Load::Handshakes { clients: 4 },
    },
    Scenario {
        name: "udp-64",
        role: Role::Udp,
        load: Load::Udp {
            clients: 16,
            size: 64,
        },
    },
    Scenario {
        name: "udp-1400",
        role: Role::Udp,
        load: Load::Udp {
            clients: 16,
            size: 1400,
        },
    },
    Scenario {
        name: "idle",
        role: Role::PingPong,
        load: Load::Idle,
    },
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return server::main(&args[1..]);
    }
    let mut rounds = 3;
    let mut secs = 2.0;
    let mut warmup = 0.3;
    let mut names = Vec::new();
    let mut only = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--list" => {
                for s in SCENARIOS {
                    println!("{}", s.name);
                }
                return Ok(());
            }
            "--rounds" => rounds = it.next().context("--rounds N")?.parse()?,
            "--secs" => secs = it.next().context("--secs S")?.parse()?,
            "--only" => {
                only = Some(match it.next().map(String::as_str) {
                    Some("ours") => Impl::Ours,
                    Some("raw") => Impl::Raw,
                    _ => bail!("--only ours|raw"),
                })
            }
            "--smoke" => {
                rounds = 1;
                secs = 1.0;
                warmup = 0.1;
                names.push("pingpong-1".to_owned());
            }
            name if !name.starts_with('-') => names.push(name.to_owned()),
            other => bail!("unknown option {other}"),
        }
    }
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
    let cfg = Config {
        rounds,
        only,
        secs: Duration::from_secs_f64(secs),
        warmup: Duration::from_secs_f64(warmup),
        pki: pki::Pki::create(
            &std::env::temp_dir().join(format!("netbench-{}", std::process::id())),
        )?,
    };
    println!(
        "netbench: {} CPU(s), load average {}; {rounds} alternating round(s) per side, {secs} s \
         measured after {warmup} s warm-up; server and load generator share the machine",
        std::thread::available_parallelism().map_or(0, usize::from),
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let mut rows = Vec::new();
    for scenario in chosen {
        println!("==> {}", scenario.name);
        rows.push(run_scenario(&rt, &cfg, scenario)?);
    }
    let _ = std::fs::remove_dir_all(cfg.pki.ca.parent().unwrap_or(&cfg.pki.ca));
    print_table(&rows);
    Ok(())
}

#[derive(Debug)]
struct Config {
    rounds: usize,
    /// Run one side only (for profiling).
    only: Option<Impl>,
    secs: Duration,
    warmup: Duration,
    pki: pki::Pki,
}

/// One scenario's medians.
#[derive(Debug)]
struct Row {
    name: &'static str,
    unit: &'static str,
    base: Stat,
    ours: Stat,
    /// Whether higher values are better (throughput) or lower (memory).
    higher_is_better: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Stat {
    value: f64,
    p50: Option<Duration>,
    p99: Option<Duration>,
}

fn run_scenario(rt: &tokio::runtime::Runtime, cfg: &Config, s: &Scenario) -> Result<Row> {
    let mut samples: [Vec<Stat>; 2] = Default::default();
    for round in 0..cfg.rounds {
        // A B, then B A, and so on: neither side always runs first.
        let mut order = [(0, Impl::Raw), (1, Impl::Ours)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (side, imp) in order {
            if cfg.only.is_some_and(|only| only != imp) {
                continue;
            }
            let stat = measure(rt, cfg, s, imp)?;
            println!(
                "    round {} {:<4} {:>12.1} {}{}",
                round + 1,
                imp.name(),
                stat.value,
                unit(s.load),
                match (stat.p50, stat.p99) {
                    (Some(a), Some(b)) => format!("  p50 {} p99 {}", fmt_dur(a), fmt_dur(b)),
                    _ => String::new(),
                }
            );
            samples[side].push(stat);
        }
    }
    let [base, ours] = samples.map(|v| median_stat(&v));
    Ok(Row {
        name: s.name,
        unit: unit(s.load),
        base,
        ours,
        higher_is_better: !matches!(s.load, Load::Idle),
    })
}

fn unit(load: Load) -> &'static str {
    match load {
        Load::PingPong { .. } => "round trips/s",
        Load::Echo { .. } => "MB/s",
        Load::Handshakes { .. } => "handshakes/s",
        Load::Udp { .. } => "datagrams/s",
        Load::Idle => "bytes/conn",
    }
}

fn median_stat(v: &[Stat]) -> Stat {
    fn med<T: PartialOrd + Copy>(mut xs: Vec<T>) -> Option<T> {
        xs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
        xs.get(xs.len() / 2).copied()
    }
    Stat {
        value: med(v.iter().map(|s| s.value).collect()).unwrap_or_default(),
        p50: med(v.iter().filter_map(|s| s.p50).collect()),
        p99: med(v.iter().filter_map(|s| s.p99).collect()),
    }
}

/// A running server process; killed when dropped.
struct ServerProcess {
    child: Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn start(cfg: &Config, imp: Impl, role: Role) -> Result<ServerProcess> {
        let exe = std::env::current_exe()?;
        // `NETBENCH_WRAP="strace -c -o FILE"` (say) runs the server under a profiler.
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
        cmd.args(["serve", "--impl", imp.name(), "--role", role.name()])
            .arg("--chain")
            .arg(&cfg.pki.chain)
            .arg("--key")
            .arg(&cfg.pki.key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("starting the server process")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let port: u16 = line
            .strip_prefix("PORT ")
            .and_then(|p| p.trim().parse().ok())
            .with_context(|| format!("server said {line:?}"))?;
        Ok(ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// The server's resident set size (`VmRSS`), in bytes.
    fn rss(&self) -> Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
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

fn measure(rt: &tokio::runtime::Runtime, cfg: &Config, s: &Scenario, imp: Impl) -> Result<Stat> {
    let server = ServerProcess::start(cfg, imp, s.role)?;
    let addr = server.addr;
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
        }
    };
    let stat = rt.block_on(async {
        let run = async {
            Ok::<_, anyhow::Error>(match s.load {
                Load::PingPong { conns } => {
                    let o = load::pingpong(addr, conns, warmup, secs).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Echo { conns, tls } => {
                    let transport = if tls {
                        Transport::Tls(tokio_rustls::TlsConnector::from(pki::client_config(
                            &cfg.pki.ca,
                        )?))
                    } else {
                        Transport::Tcp
                    };
                    let o = load::echo(addr, conns, transport, warmup, secs).await?;
                    throughput(o, o.bytes_per_sec / 1e6)
                }
                Load::Handshakes { clients } => {
                    let connector =
                        tokio_rustls::TlsConnector::from(pki::client_config(&cfg.pki.ca)?);
                    let o = load::handshakes(addr, clients, connector, warmup, secs).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Udp { clients, size } => {
                    let o = load::udp(addr, clients, size, warmup, secs).await?;
                    throughput(o, o.ops_per_sec)
                }
                Load::Idle => {
                    check_descriptor_limit()?;
                    // Let the server settle, then measure before and after.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    let before = server.rss()?;
                    let streams = load::open_idle(addr, IDLE_CONNS).await?;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let after = server.rss()?;
                    // The server goes first, so TIME_WAIT stays on its side.
                    let value = (after.saturating_sub(before)) as f64 / IDLE_CONNS as f64;
                    drop(streams);
                    Stat {
                        value,
                        p50: None,
                        p99: None,
                    }
                }
            })
        };
        tokio::time::timeout(limit, run)
            .await
            .context("the run overran its time limit")?
    })?;
    drop(server);
    Ok(stat)
}

/// The idle scenario needs more than 10,000 descriptors in each process.
fn check_descriptor_limit() -> Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft: Option<u64> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse().ok());
    if let Some(soft) = soft {
        ensure!(
            soft as usize > IDLE_CONNS + 100,
            "the idle scenario needs more than {} open files (soft limit is {soft}); \
             raise it with `ulimit -n 20000`",
            IDLE_CONNS + 100
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

fn print_table(rows: &[Row]) {
    println!();
    println!(
        "{:<14} {:>13} {:>13} {:>7}  {:<14} {:<22} {:<22}",
        "scenario", "baseline", "ours", "ratio", "unit", "baseline p50 / p99", "ours p50 / p99"
    );
    for r in rows {
        let ratio = if r.base.value > 0.0 {
            r.ours.value / r.base.value
        } else {
            f64::NAN
        };
        let lat = |s: &Stat| match (s.p50, s.p99) {
            (Some(a), Some(b)) => format!("{} / {}", fmt_dur(a), fmt_dur(b)),
            _ => "-".to_owned(),
        };
        let verdict = match (r.higher_is_better, ratio) {
            (true, x) if x >= 0.95 => "ok (>= 0.95)",
            (true, _) => "BELOW 0.95",
            (false, x) if x <= 1.25 => "ok (<= 1.25)",
            (false, _) => "ABOVE 1.25",
        };
        println!(
            "{:<14} {:>13.1} {:>13.1} {:>6.3}x  {:<14} {:<22} {:<22} {}",
            r.name,
            r.base.value,
            r.ours.value,
            ratio,
            r.unit,
            lat(&r.base),
            lat(&r.ours),
            verdict
        );
    }
    println!();
    println!(
        "ratio = ours / baseline: for throughput higher is better (bar >= 0.95), for \
         bytes/conn lower is better (bar <= 1.25)."
    );
}
