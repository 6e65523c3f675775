//! The seed's socket server: greets each client and answers every line with `Hello, <line>!`.
//!
//! ```text
//! cargo run -p examples --bin sockets-server -- [HOST] [PORT]    # default 127.0.0.1 9002
//!     [--idle-timeout SECS]      # close a connection silent this long (default 300)
//!     [--max-connections N]      # accept no more while N are open (default 10000)
//!     [--max-per-ip N]           # close at once a client address's connection beyond N (default 1000)
//!     [--proxy-protocol]         # require a PROXY v1/v2 header (needs net-sockets support)
//!     [--grace SECS]             # how long shutdown waits for open connections (default 10)
//! ```
//!
//! Unlike the documentation's Kotlin sample, it stops answering when the client leaves (no
//! `Hello, null!` loop), and a line over 8192 bytes ends only that connection.
//!
//! On SIGINT or SIGTERM it prints `Shutting down (N open)`, closes the listener at once, lets
//! each connection finish the reply it is writing, sends it `Server is shutting down` and
//! closes it, waits at most the grace period for the clients to leave, prints
//! `Server stopped` and exits 0.

use std::collections::HashMap;
use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::Ending;
use examples::shutdown::{Connections, ShutdownNotice, Signals, serve_until_signal};
use net_sockets::{SelectorManager, Socket, SocketAddress, TcpSocketBuilder, a_socket};

/// Greets each client and answers every line with `Hello, <line>!` (the Ktor sample's server).
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Address to listen on.
    #[arg(default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0: any free port).
    #[arg(default_value_t = 9002)]
    port: u16,
    #[command(flatten)]
    config: ServerConfig,
}

/// How the server treats its connections, from the command line.
#[derive(clap::Args, Debug)]
struct ServerConfig {
    /// Close a connection that sends nothing (or takes nothing we write) for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = idle_timeout)]
    idle_timeout: Duration,
    /// Accept no new connection while this many are open.
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = examples::cli::at_least_one)]
    max_connections: usize,
    /// Close at once a connection from a client address that already has this many open.
    #[arg(long, value_name = "N", default_value_t = 1_000, value_parser = examples::cli::at_least_one)]
    max_per_ip: usize,
    /// Require a PROXY protocol v1 or v2 header on every connection and greet the client it
    /// names (not available until net-sockets reads PROXY headers).
    #[arg(long)]
    proxy_protocol: bool,
    /// On SIGINT/SIGTERM, wait at most this many seconds for open connections to finish.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = examples::cli::seconds)]
    grace: Duration,
}

fn idle_timeout(text: &str) -> Result<Duration, String> {
    match examples::cli::seconds(text)? {
        Duration::ZERO => Err("the idle timeout must be at least 1 second".to_owned()),
        timeout => Ok(timeout),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    examples::run("sockets-server", serve(args)).await
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let Args { host, port, config } = args;
    let selector = SelectorManager::new();
    let server = listener(&selector, &config)?
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {host}:{port}"))?;
    let signals = Signals::install().context("cannot catch SIGINT and SIGTERM")?;
    println!("Server is listening at {}", server.local_address());
    let per_ip = PerIp::new(config.max_per_ip);
    serve_until_signal(
        &server,
        signals,
        config.max_connections,
        config.grace,
        |socket, connections| accepted(socket, connections, &per_ip),
    )
    .await?;
    selector.close();
    Ok(())
}

/// The listener's builder with the options of `config` that net-sockets applies itself: the
/// idle timeout (as `socket_timeout`, inherited by every accepted socket).
///
/// # Errors
///
/// `--proxy-protocol`, which this version of net-sockets cannot honour: serving without it
/// would greet the proxy's header as a name.
fn listener(selector: &SelectorManager, config: &ServerConfig) -> anyhow::Result<TcpSocketBuilder> {
    if config.proxy_protocol {
        anyhow::bail!("--proxy-protocol: this version of net-sockets cannot read PROXY headers");
    }
    Ok(a_socket(selector).tcp().socket_timeout(config.idle_timeout))
}

/// A new connection: admitted (or closed at once, past `--max-per-ip`), announced, and served
/// in a task of its own.
fn accepted(socket: Socket, connections: &mut Connections, per_ip: &PerIp) {
    let remote = socket.remote_address();
    let Some(slot) = per_ip.admit(&remote) else {
        println!(
            "Refused {remote}: {} connections from its address are open",
            per_ip.limit
        );
        socket.close();
        return;
    };
    println!("Accepted {remote}");
    connections.spawn(|stop| greet(socket, slot, stop));
}

/// One client: the prompt, then a greeting per line until the client closes its side or the
/// server shuts down.
async fn greet(mut socket: Socket, slot: Slot, mut stop: ShutdownNotice) {
    let remote = socket.remote_address();
    if let Err(e) = converse(&mut socket, &mut stop).await {
        println!("Connection with {remote} ended: {e}");
    }
    // The place is free before the client can see the end.
    drop(slot);
    socket.close();
}

async fn converse(socket: &mut Socket, stop: &mut ShutdownNotice) -> net_sockets::Result<()> {
    let mut input = socket.open_read_channel()?;
    let mut output = socket.open_write_channel(true)?;
    if examples::greet(&mut input, &mut output, stop).await? == Ending::ShutDown {
        // Told and half-closed: read until the client leaves, so that unread input does not
        // turn the close into a reset; the grace period bounds the wait.
        input.discard(u64::MAX).await?;
    }
    Ok(())
}

/// Open connections per client address, for `--max-per-ip`. Unix-socket clients have no
/// address and are not counted.
#[derive(Debug)]
struct PerIp {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One admitted connection's place in its address's count; dropping it frees the place.
#[derive(Debug)]
struct Slot {
    ip: Option<IpAddr>,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl PerIp {
    fn new(limit: usize) -> PerIp {
        PerIp {
            limit,
            open: Arc::default(),
        }
    }

    /// A place for a connection from `remote`, or `None` when its address has `limit` open.
    fn admit(&self, remote: &SocketAddress) -> Option<Slot> {
        let ip = remote.as_inet().map(|inet| inet.ip());
        if let Some(ip) = ip {
            let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
            let count = open.entry(ip).or_default();
            if *count >= self.limit {
                return None;
            }
            *count += 1;
        }
        Some(Slot {
            ip,
            open: Arc::clone(&self.open),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = open.get_mut(&ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&ip);
            }
        }
    }
}
