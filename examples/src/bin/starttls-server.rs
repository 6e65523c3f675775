//! A minimal SMTP-style server that upgrades a plain-text connection to TLS with `STARTTLS`
//! (RFC 3207): the connection's channels become a TLS session with one call,
//! `connection.tls_server(&config)`.
//!
//! ```text
//! cargo run -p examples --bin starttls-server -- [HOST] [PORT]     # default 127.0.0.1 9025
//!     [--cert FILE --key FILE]    # PEM chain (leaf first) and key; default: self-signed
//!     [--grace SECS]              # how long shutdown waits for open connections (default 10)
//! ```
//!
//! The conversation (replies end in CRLF; commands may end in CRLF or LF and are
//! case-insensitive):
//!
//! ```text
//! S: 220 HOST ready
//! C: EHLO client.example          S: 250-HOST / 250-PIPELINING / 250 STARTTLS
//! C: STARTTLS                     S: 220 Ready to start TLS      (then the TLS handshake)
//! C: EHLO client.example          S: 250-HOST / 250 PIPELINING   (no STARTTLS once secure)
//! C: NOOP                         S: 250 OK
//! C: QUIT                         S: 221 Bye                     (and the server closes)
//! ```
//!
//! Every reply that names the server (the greeting, `EHLO`, `HELO`, `421`) writes an address
//! HOST as RFC 5321's address literal: `220 [127.0.0.1] ready`, `250-[IPv6:::1]`.
//!
//! Anything else is answered `502 Command not implemented`. Bytes a client sends right after
//! `STARTTLS` (its ClientHello, in the same packet) go to TLS; plain-text commands pipelined
//! after `STARTTLS` are therefore never run as if they had come over TLS (they break the
//! handshake instead). Without `--cert`/`--key` the server makes a self-signed certificate at
//! start-up and prints its SHA-256 fingerprint, as `sockets-server-tls` does. A client that
//! sends nothing for 5 minutes (RFC 5321's timeout; [`IDLE_TIMEOUT`], not an option here) is
//! closed and reported as `Connection with CLIENT ended: timed out`; the TLS handshake has its
//! own limit of 10 seconds.
//!
//! On SIGINT or SIGTERM it shuts down as `sockets-server-tls` does: it prints `Shutting down
//! (N open)` and closes the listener at once; each session answers the commands it already
//! received (a client that never pauses is answered until the grace period ends), then says
//! goodbye the SMTP way, `421 HOST Server is shutting down` (in plain text,
//! or over TLS followed by `close_notify`), closes its side and reads what the client still
//! sends for at most a second; the server waits at most the grace period for them (a second
//! signal: not at all), prints `Server stopped` and exits 0. A session in the middle of its TLS
//! handshake finishes it first.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::IpAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::shutdown::{Signals, serve_until_signal};
use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{ShutdownSignal, Socket, a_socket};
use net_tls::{TlsExt, TlsServerConfig};

/// The longest command line accepted, in bytes before its line ending (RFC 5321, 4.5.3.1.4,
/// allows 512 octets with the CRLF; this server takes two more).
const COMMAND_LIMIT: usize = 512;

/// How long a client that sends nothing keeps its connection (RFC 5321 asks for 5 minutes).
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the server reads a leaving client's last bytes before closing.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// A minimal SMTP-style server that upgrades connections to TLS with STARTTLS.
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Address to listen on, also the name the server greets with: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
    /// (127.0.0.1:9025, [::1]:9025).
    #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Port to listen on (0: any free port) [default: 9025]
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    #[command(flatten)]
    identity: examples::tls::Identity,
    /// On SIGINT/SIGTERM, wait at most this many seconds for open connections to finish.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = examples::cli::seconds)]
    grace: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    let (host, port) = examples::address::endpoint::<Args>(&args.host, args.port, Some(9025));
    examples::run("starttls-server", serve(args, host, port)).await
}

async fn serve(args: Args, host: String, port: u16) -> anyhow::Result<()> {
    let (builder, about) = args.identity.builder("starttls-server")?;
    let config = args.identity.build(builder)?;

    let selector = net_sockets::SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .socket_timeout(IDLE_TIMEOUT)
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {}", examples::join_host_port(&host, port)))?;
    let signals = Signals::install().context("cannot catch SIGINT and SIGTERM")?;
    for line in about {
        examples::say!("{line}");
    }
    examples::say!("Server is listening at {}", server.local_address());
    let host: Arc<str> = Arc::from(host);
    serve_until_signal(&server, signals, args.grace, |socket| {
        let remote = socket.remote_address();
        examples::say!("Accepted {remote}");
        let (config, host) = (config.clone(), Arc::clone(&host));
        let stop = socket.shutdown_signal();
        async move {
            match session(socket, &config, &host, &stop).await {
                // Cut at the end of a shutdown's grace period: the server reports those itself.
                Err(e) if stop.is_requested() && is_closed(&e) => {}
                Err(e) => examples::say!("Connection with {remote} ended: {e:#}"),
                Ok(()) => {}
            }
        }
    })
    .await?;
    selector.close();
    Ok(())
}

/// Whether `e` says that the socket was closed under the session (as the end of a shutdown's
/// grace period closes it).
fn is_closed(e: &anyhow::Error) -> bool {
    let closed = |e: &net_sockets::Error| matches!(e, net_sockets::Error::Closed);
    // The channels report it as an I/O error carrying the socket's.
    let in_channel = || {
        e.downcast_ref::<net_io::Error>()
            .and_then(net_io::Error::inner_error)
            .and_then(|inner| inner.downcast_ref::<net_sockets::Error>())
    };
    e.downcast_ref::<net_sockets::Error>().is_some_and(closed) || in_channel().is_some_and(closed)
}

/// One client: the plain-text part, the upgrade, the part over TLS.
async fn session(
    socket: Socket,
    config: &TlsServerConfig,
    host: &str,
    stop: &ShutdownSignal,
) -> anyhow::Result<()> {
    let remote = socket.remote_address();
    let mut plain = socket.connection()?;
    // Every reply that names the server names it this way (the greeting, EHLO, HELO, 421).
    let host = &greeting_name(host);
    let greeting = format!("220 {host} ready\r\n");
    plain.output.write_string_utf8(&greeting).await?;
    plain.output.flush().await?;
    if converse(&mut plain.input, &mut plain.output, host, false, stop).await? != Next::StartTls {
        plain.close_gracefully(CLOSE_WAIT).await?;
        return Ok(());
    }
    // Flushes `220 Ready to start TLS` first; a ClientHello already read with the command is
    // the handshake's first input.
    let tls = match plain.tls_server(config).await {
        Ok(tls) => tls,
        // A handshake cut at the end of a shutdown's grace period: the server reports it.
        Err(e) if examples::tls::cut_by_shutdown(&e, stop) => return Ok(()),
        Err(e) => {
            examples::say_err!("No TLS with {remote}: {e}");
            return Ok(());
        }
    };
    examples::say!("TLS with {remote}: {}", examples::describe_session(&tls));
    let mut secure = tls.connection()?;
    converse(&mut secure.input, &mut secure.output, host, true, stop).await?;
    secure.close_gracefully(CLOSE_WAIT).await?;
    Ok(())
}

/// Why a conversation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// The client asked for TLS and was told to go ahead.
    StartTls,
    /// The client said `QUIT` and was answered.
    Quit,
    /// The client closed its side, or broke the rules and was told, or the server is shutting
    /// down and the client was told (`421`).
    Close,
}

/// Answers commands until one of them changes the connection. Replies to pipelined commands
/// are sent together, when no further whole command is waiting (RFC 2920): the replies are
/// flushed before the server waits for input, also when the start of a command is buffered.
///
/// When `stop` comes, the commands already here are answered first; then the client is told
/// `421 HOST Server is shutting down` (RFC 5321, 3.8), and the conversation ends.
async fn converse(
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    host: &str,
    secure: bool,
    stop: &ShutdownSignal,
) -> net_io::Result<Next> {
    // One wait for the signal for the whole conversation: it registers once, not per command.
    let stop = stop.requested();
    tokio::pin!(stop);
    loop {
        // A whole command that is already here is answered first; otherwise the replies so
        // far leave before the wait. `read_line` is cancel safe: a line is consumed only
        // when it is there whole.
        let line = tokio::select! {
            biased;
            line = input.read_line(COMMAND_LIMIT, LineEnding::Default) => line,
            () = std::future::ready(()) => {
                output.flush().await?;
                tokio::select! {
                    biased;
                    line = input.read_line(COMMAND_LIMIT, LineEnding::Default) => line,
                    () = &mut stop => {
                        let goodbye = format!("421 {host} Server is shutting down\r\n");
                        output.write_string_utf8(&goodbye).await?;
                        output.flush().await?;
                        return Ok(Next::Close);
                    }
                }
            }
        };
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(Next::Close),
            Err(net_io::Error::TooLongLine { .. }) => {
                output
                    .write_string_utf8("500 Line too long, closing the connection\r\n")
                    .await?;
                output.flush().await?;
                return Ok(Next::Close);
            }
            Err(e) => return Err(e),
        };
        let (reply, next) = reply(&line, host, secure);
        output.write_string_utf8(&reply).await?;
        if next.is_some() {
            output.flush().await?;
        }
        if let Some(next) = next {
            return Ok(next);
        }
    }
}

/// How the replies name the server (RFC 5321 §4.1.3): an address as an address literal,
/// `[127.0.0.1]` or `[IPv6:::1]` (without a scope, which SMTP has no room for), a name as it is.
fn greeting_name(host: &str) -> String {
    let address = host.split('%').next().unwrap_or(host);
    match address.parse::<IpAddr>() {
        Ok(IpAddr::V4(address)) => format!("[{address}]"),
        Ok(IpAddr::V6(address)) => format!("[IPv6:{address}]"),
        Err(_) => host.to_owned(),
    }
}

/// The reply to one command line (CRLF-terminated lines), and what comes next when the
/// command ends this part of the conversation.
fn reply(line: &str, host: &str, secure: bool) -> (String, Option<Next>) {
    let (verb, argument) = match line.trim().split_once(' ') {
        Some((verb, argument)) => (verb, argument.trim()),
        None => (line.trim(), ""),
    };
    match verb.to_ascii_uppercase().as_str() {
        "EHLO" if argument.is_empty() => ("501 Syntax: EHLO domain\r\n".to_owned(), None),
        "EHLO" if secure => (format!("250-{host}\r\n250 PIPELINING\r\n"), None),
        "EHLO" => (
            format!("250-{host}\r\n250-PIPELINING\r\n250 STARTTLS\r\n"),
            None,
        ),
        "HELO" if argument.is_empty() => ("501 Syntax: HELO domain\r\n".to_owned(), None),
        "HELO" => (format!("250 {host}\r\n"), None),
        "STARTTLS" if secure => ("503 TLS is already active\r\n".to_owned(), None),
        "STARTTLS" if !argument.is_empty() => ("501 Syntax: STARTTLS\r\n".to_owned(), None),
        "STARTTLS" => (
            "220 Ready to start TLS\r\n".to_owned(),
            Some(Next::StartTls),
        ),
        "NOOP" => ("250 OK\r\n".to_owned(), None),
        "QUIT" => ("221 Bye\r\n".to_owned(), Some(Next::Quit)),
        _ => ("502 Command not implemented\r\n".to_owned(), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ehlo_lists_starttls_only_before_tls() {
        let (plain, next) = reply("EHLO client.example", "mx", false);
        assert_eq!(plain, "250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n");
        assert_eq!(next, None);
        let (secure, _) = reply("ehlo client.example", "mx", true);
        assert_eq!(secure, "250-mx\r\n250 PIPELINING\r\n");
        assert!(reply("EHLO", "mx", false).0.starts_with("501 "));
    }

    #[test]
    fn starttls_noop_quit_and_the_rest() {
        assert_eq!(
            reply("STARTTLS", "mx", false),
            (
                "220 Ready to start TLS\r\n".to_owned(),
                Some(Next::StartTls)
            )
        );
        assert!(reply("STARTTLS", "mx", true).0.starts_with("503 "));
        assert!(reply("STARTTLS now", "mx", false).0.starts_with("501 "));
        assert_eq!(reply("noop", "mx", true), ("250 OK\r\n".to_owned(), None));
        assert_eq!(
            reply("QUIT", "mx", false),
            ("221 Bye\r\n".to_owned(), Some(Next::Quit))
        );
        for other in ["MAIL FROM:<a@b>", "RSET", "", "VRFY x"] {
            assert!(reply(other, "mx", false).0.starts_with("502 "), "{other}");
        }
    }
}
