//! The seed's socket server: greets each client and answers every line with `Hello, <line>!`.
//!
//! ```text
//! cargo run -p examples --bin sockets-server -- [HOST] [PORT]    # default 127.0.0.1 9002
//!     [--idle-timeout SECS]      # close a connection silent this long (default 300)
//!     [--max-connections N]      # accept no more while N are open (default 10000)
//!     [--max-per-ip N]           # close at once a client address's connection beyond N (default 1000)
//!     [--proxy-protocol]         # require a PROXY v1/v2 header; greet the client it names
//!     [--grace SECS]             # how long shutdown waits for open connections (default 10)
//!     [--busy-poll MICROS]       # poll for input this long after each wait (default 200; 0: off)
//! ```
//!
//! Unlike the documentation's Kotlin sample, it stops answering when the client leaves (no
//! `Hello, null!` loop), and a line over 8192 bytes ends only that connection. A line ends at
//! LF or CRLF (`net_io::LineEnding::Default`); a lone CR, which Ktor's `readUTF8Line` also
//! takes as a line's end, is part of the line: `Alice\rBob\n` is answered `Hello, Alice\rBob!`,
//! and a client that ends its lines with CR alone (a terminal in raw mode) is answered only
//! once an LF comes (8192 bytes without one are a line too long).
//!
//! On SIGINT or SIGTERM it prints `Shutting down (N open)`, closes the listener at once, lets
//! each connection finish the reply it is writing, sends it `Server is shutting down` and
//! closes it, waits at most the grace period for the clients to leave, prints
//! `Server stopped` and exits 0.
//!
//! Connections the listener turns away are reported too, within a second (and at the latest
//! as the server stops), one line for those since the last report: `Refused N connections:
//! over --max-per-ip` for a client address over its cap, `Dropped N connections: no valid
//! PROXY header within 5 s` under `--proxy-protocol` (the header missing, malformed or late;
//! `1 connection` for one); nothing when none was.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::cell::RefCell;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::Ending;
use examples::shutdown::{Signals, serve_until_signal_then};
use net_sockets::{
    ListenerStats, ProxyProtocol, SelectorManager, ServerSocket, Socket, TcpSocketBuilder, a_socket,
};

/// Greets each client and answers every line with `Hello, <line>!` (the Ktor sample's server).
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Address to listen on: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
    /// (127.0.0.1:9002, [::1]:9002).
    #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Port to listen on (0: any free port) [default: 9002]
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    #[command(flatten)]
    config: ServerConfig,
}

/// How the server treats its connections, from the command line.
#[derive(clap::Args, Debug)]
struct ServerConfig {
    /// Close a connection that sends nothing (or takes nothing we write) for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = examples::cli::at_least_one_second)]
    idle_timeout: Duration,
    /// Accept no new connection while this many are open.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = examples::cli::at_least_one)]
    max_connections: usize,
    /// Close at once a connection from a client address that already has this many open.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = examples::cli::at_least_one)]
    max_per_ip: usize,
    /// Require a PROXY protocol v1 or v2 header on every connection (as HAProxy's
    /// `send-proxy` sends); the client it names is the one counted by `--max-per-ip`.
    #[arg(long)]
    proxy_protocol: bool,
    /// On SIGINT/SIGTERM, wait at most this many seconds for open connections to finish.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = examples::cli::seconds)]
    grace: Duration,
    /// Keep a thread polling for input this many microseconds after a read begins waiting,
    /// instead of sleeping: a few busy clients are answered sooner, at the cost of a core kept
    /// busy while requests keep coming less than this far apart; none while idle (0: off).
    #[arg(long, value_name = "MICROS", default_value_t = 200)]
    busy_poll: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    let (host, port) = examples::address::endpoint::<Args>(&args.host, args.port, Some(9002));
    examples::run("sockets-server", serve(host, port, args.config)).await
}

async fn serve(host: String, port: u16, config: ServerConfig) -> anyhow::Result<()> {
    let selector = SelectorManager::with_busy_poll(Duration::from_micros(config.busy_poll));
    let server = listener(&selector, &config)
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {}", examples::join_host_port(&host, port)))?;
    let signals = Signals::install().context("cannot catch SIGINT and SIGTERM")?;
    examples::say!("Server is listening at {}", server.local_address());
    // The reports end with the serving, and take a last look before `Server stopped` (a
    // shutdown with nothing to wait for ends before the reports look again): the listener
    // closed at the start of the shutdown, so nothing is turned away after that look.
    let turned_away = RefCell::new(TurnedAway::default());
    let last = || turned_away.borrow_mut().report(server.stats());
    tokio::select! {
        biased;
        served = serve_until_signal_then(&server, signals, config.grace, accepted, last) => served?,
        never = report_turned_away(&server, &turned_away) => match never {},
    }
    selector.close();
    Ok(())
}

/// The listener's builder with the options of `config`: the idle timeout (as
/// `socket_timeout`, inherited by every accepted socket), the connection caps, and the PROXY
/// protocol.
fn listener(selector: &SelectorManager, config: &ServerConfig) -> TcpSocketBuilder {
    let proxy = if config.proxy_protocol {
        ProxyProtocol::Required
    } else {
        ProxyProtocol::Off
    };
    a_socket(selector)
        .tcp()
        .socket_timeout(config.idle_timeout)
        .max_connections(config.max_connections)
        .max_connections_per_ip(config.max_per_ip)
        .proxy_protocol(proxy)
        .proxy_header_timeout(PROXY_HEADER_TIMEOUT)
}

/// How often [`report_turned_away`] looks at the listener's counters.
const REPORT_EVERY: Duration = Duration::from_millis(500);

/// What the listener turned away, as far as it was reported: connections over
/// `--max-per-ip`, and those without a valid PROXY header in time (they never reach
/// `accepted`, so they are not announced there). Counted from zero, the listener's own start,
/// not from a first look: one may come after a client that connected as soon as the server
/// said it listens was turned away.
#[derive(Default)]
struct TurnedAway {
    refused: u64,
    dropped: u64,
}

impl TurnedAway {
    /// Prints those turned away since the last report, one line for each kind there were any
    /// of.
    fn report(&mut self, now: ListenerStats) {
        if now.refused_per_ip > self.refused {
            let new = now.refused_per_ip - self.refused;
            examples::say!("Refused {}: over --max-per-ip", connections(new));
            self.refused = now.refused_per_ip;
        }
        if now.proxy_header_failures > self.dropped {
            let new = now.proxy_header_failures - self.dropped;
            examples::say!(
                "Dropped {}: no valid PROXY header within {} s",
                connections(new),
                PROXY_HEADER_TIMEOUT.as_secs()
            );
            self.dropped = now.proxy_header_failures;
        }
    }
}

/// Reports what `server` turned away every [`REPORT_EVERY`], and once more as soon as it
/// closes (a shutdown closes it first; the caller looks a last time at the end of the
/// shutdown, before `Server stopped`, which may come before this is polled again). Runs until
/// dropped.
async fn report_turned_away(
    server: &ServerSocket,
    turned_away: &RefCell<TurnedAway>,
) -> std::convert::Infallible {
    let mut ticks = tokio::time::interval(REPORT_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let closed = tokio::select! {
            biased;
            () = server.await_closed() => true,
            _ = ticks.tick() => false,
        };
        turned_away.borrow_mut().report(server.stats());
        if closed {
            return std::future::pending().await;
        }
    }
}

/// How long the listener waits for a connection's PROXY header: net-sockets' default, which
/// this server keeps.
const PROXY_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

/// `1 connection`, `2 connections`.
fn connections(n: u64) -> String {
    format!("{n} connection{}", if n == 1 { "" } else { "s" })
}

/// A new connection: announced; returns the task that serves it.
fn accepted(socket: Socket) -> impl Future<Output = ()> + Send + 'static {
    match socket.proxy_address() {
        Some(proxy) => examples::say!("Accepted {} via {proxy}", socket.remote_address()),
        None => examples::say!("Accepted {}", socket.remote_address()),
    }
    greet(socket)
}

/// One client: the prompt, then a greeting per line until the client closes its side or the
/// server shuts down.
async fn greet(mut socket: Socket) {
    let remote = socket.remote_address();
    match converse(&mut socket).await {
        // Cut at the end of a shutdown's grace period: the server reports those itself.
        Err(net_sockets::Error::Closed) if socket.is_shutdown_requested() => {}
        Err(e) => examples::say!("Connection with {remote} ended: {e}"),
        Ok(()) => {}
    }
    socket.close();
}

async fn converse(socket: &mut Socket) -> net_sockets::Result<()> {
    let stop = socket.shutdown_signal();
    let mut input = socket.open_read_channel()?;
    let mut output = socket.open_write_channel(true)?;
    if examples::greet(&mut input, &mut output, &stop).await? == Ending::ShutDown {
        // Told and half-closed: read until the client leaves, so that unread input does not
        // turn the close into a reset; the grace period bounds the wait.
        input.discard(u64::MAX).await?;
    }
    Ok(())
}
