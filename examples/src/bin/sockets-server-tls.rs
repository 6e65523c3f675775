//! The TLS version of `sockets-server` (not in Ktor): greets each client over TLS and answers
//! every line with `Hello, <line>!`.
//!
//! ```text
//! cargo run -p examples --bin sockets-server-tls -- [HOST] [PORT]     # default 127.0.0.1 9443
//!     [--cert FILE --key FILE]    # PEM chain (leaf first) and key; default: self-signed
//!     [--client-ca FILE]          # require client certificates issued by this CA (PEM)
//!     [--alpn LIST]               # accepted ALPN protocols, comma-separated, preferred first
//!     [--idle-timeout SECS]       # close a connection silent this long (default 300)
//!     [--grace SECS]              # how long shutdown waits for open connections (default 10)
//! ```
//!
//! Without `--cert`/`--key` it makes a self-signed certificate at start-up for `localhost`,
//! `127.0.0.1` and `::1` and prints its SHA-256 fingerprint, so that a client run with
//! `--insecure` can be checked by hand. A client whose handshake fails costs one line on stderr,
//! `No TLS with CLIENT: REASON`; the server keeps serving everyone else. (A handshake still
//! under way when a shutdown's grace period ends is not a failed one: it is counted in
//! `Closed N connections still open after the grace period`, as any connection cut then.)
//!
//! A connection that sends nothing (or takes nothing the server writes) for `--idle-timeout`
//! seconds is closed, as in `sockets-server` (the listener's `socket_timeout`): after the
//! handshake it is reported as `Connection with CLIENT ended: timed out`; during the
//! handshake, which has its own limit of 10 seconds, as a failed handshake (`No TLS with
//! CLIENT: …`).
//!
//! On SIGINT or SIGTERM it shuts down as `sockets-server` does: it prints `Shutting down (N
//! open)`, closes the listener at once, lets each connection finish the reply it is writing,
//! sends it `Server is shutting down` and the TLS `close_notify`, waits at most the grace
//! period for the clients to leave (a second signal: not at all), prints `Server stopped` and
//! exits 0.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::Ending;
use examples::shutdown::{Signals, serve_until_signal};
use net_sockets::{Socket, a_socket};
use net_tls::{TlsExt, TlsServerConfig, TlsSocket};

/// Greets each client over TLS and answers every line with `Hello, <line>!`.
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Address to listen on: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
    /// (127.0.0.1:9443, [::1]:9443).
    #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Port to listen on (0: any free port) [default: 9443]
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    #[command(flatten)]
    identity: examples::tls::Identity,
    /// Require client certificates issued by the CA certificates in this PEM file.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// ALPN protocols to accept, preferred first.
    #[arg(long, value_name = "PROTOCOL,...", value_delimiter = ',', value_parser = alpn_protocol)]
    alpn: Vec<String>,
    /// Close a connection that sends nothing (or takes nothing we write) for this many seconds.
    #[arg(long, value_name = "SECS", default_value = "300", value_parser = examples::cli::at_least_one_second)]
    idle_timeout: Duration,
    /// On SIGINT/SIGTERM, wait at most this many seconds for open connections to finish.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = examples::cli::seconds)]
    grace: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    check_alpn_list(&args.alpn);
    let (host, port) = examples::address::endpoint::<Args>(&args.host, args.port, Some(9443));
    examples::run("sockets-server-tls", serve(args, host, port)).await
}

async fn serve(args: Args, host: String, port: u16) -> anyhow::Result<()> {
    let (config, about) = server_config(&args)?;
    let Args {
        idle_timeout,
        grace,
        ..
    } = args;

    let selector = net_sockets::SelectorManager::new();
    // `socket_timeout`, inherited by every accepted socket: the TLS session's reads and writes
    // (and the handshake's, within its own 10-second limit) fail after this long without
    // progress.
    let server = a_socket(&selector)
        .tcp()
        .socket_timeout(idle_timeout)
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {}", examples::join_host_port(&host, port)))?;
    let signals = Signals::install().context("cannot catch SIGINT and SIGTERM")?;
    for line in about {
        examples::say!("{line}");
    }
    examples::say!("Server is listening at {}", server.local_address());
    serve_until_signal(&server, signals, grace, |socket| {
        examples::say!("Accepted {}", socket.remote_address());
        greet(socket, config.clone())
    })
    .await?;
    selector.close();
    Ok(())
}

/// The TLS configuration from the arguments, and lines that say which certificate is served.
fn server_config(args: &Args) -> anyhow::Result<(TlsServerConfig, Vec<String>)> {
    let (builder, about) = args.identity.builder("sockets-server-tls")?;
    let builder = match &args.client_ca {
        Some(file) => {
            let pem =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            // The library is given bytes, so its PEM errors say `PEM bytes`: name the file.
            builder.client_auth_required(&pem).map_err(|e| {
                let reason = match &e {
                    net_tls::Error::Pem { reason, .. } => reason.to_string(),
                    e => e.to_string(),
                };
                anyhow::anyhow!("unusable client CA in {}: {reason}", file.display())
            })?
        }
        None => builder,
    };
    let builder = if args.alpn.is_empty() {
        builder
    } else {
        builder.alpn_protocols(&args.alpn)
    };
    Ok((args.identity.build(builder)?, about))
}

/// Parses one name of `--alpn`: RFC 7301 gives a protocol name 1 to 255 bytes, so an empty one
/// (`--alpn ''`, `--alpn h2,,x`) is refused rather than skipped.
fn alpn_protocol(text: &str) -> Result<String, String> {
    if (1..=255).contains(&text.len()) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "an ALPN protocol name has 1 to 255 bytes, not {}",
            text.len()
        ))
    }
}

/// Ends the program with a usage error (exit status 2) when the `--alpn` names, each with its
/// length byte, take more than a ClientHello's list can carry (`net_tls::MAX_ALPN_LIST`): a bad
/// argument, not a failure of the configuration once the server starts.
fn check_alpn_list(names: &[String]) {
    let total: usize = names.iter().map(|name| 1 + name.len()).sum();
    if total > net_tls::MAX_ALPN_LIST {
        examples::cli::usage_error::<Args>(format!(
            "the --alpn protocols take {total} bytes with their length bytes, more than the \
             {} an ALPN list can carry",
            net_tls::MAX_ALPN_LIST
        ));
    }
}

/// One client: the handshake, then the conversation of `sockets-server`.
async fn greet(socket: Socket, config: TlsServerConfig) {
    let remote = socket.remote_address();
    let stop = socket.shutdown_signal();
    let mut tls = match socket.tls_server(&config).await {
        Ok(tls) => tls,
        // A handshake cut at the end of a shutdown's grace period: the server reports it.
        Err(e) if examples::tls::cut_by_shutdown(&e, &stop) => return,
        Err(e) => {
            examples::say_err!("No TLS with {remote}: {e}");
            return;
        }
    };
    examples::say!("TLS with {remote}: {}", examples::describe_session(&tls));
    match converse(&mut tls).await {
        // Cut at the end of a shutdown's grace period: the server reports those itself.
        Err(net_sockets::Error::Closed) if tls.is_shutdown_requested() => {}
        Err(e) => examples::say!("Connection with {remote} ended: {e}"),
        Ok(()) => {}
    }
    tls.close();
}

async fn converse(tls: &mut TlsSocket) -> net_sockets::Result<()> {
    let mut input = tls.open_read_channel()?;
    let mut output = tls.open_write_channel(true)?;
    let stop = tls.shutdown_signal();
    match examples::greet(&mut input, &mut output, &stop).await? {
        // The client has finished: answer its close_notify with ours.
        Ending::ClientLeft => output.flush_and_close().await?,
        // Told, and our close_notify sent: read until the client leaves, so that unread input
        // does not turn the close into a reset; the grace period bounds the wait.
        Ending::ShutDown => {
            input.discard(u64::MAX).await?;
        }
    }
    Ok(())
}
