//! UDP echo server and client in one program.
//!
//! ```text
//! cargo run -p examples --bin udp-echo -- server [HOST] [PORT]   # default 127.0.0.1 9003
//! cargo run -p examples --bin udp-echo -- client [HOST] [PORT]   # sends stdin lines, prints replies
//! ```
//!
//! The client sends each line of stdin (without its line ending, LF or CRLF) as one datagram,
//! its bytes as they are (UTF-8 or not): a line of up to 65,507 bytes to an IPv4 server, 65,527
//! to an IPv6 one; a longer line ends it with status 1. It waits at most 3 seconds for each
//! echo (UDP may lose a datagram or its echo, and nothing tells); none in that time ends it
//! with status 1 (`no reply from HOST:PORT within 3s`), as does an ICMP error for the
//! datagram (`Connection refused` when nothing listens there). A reply is printed as text
//! (bytes that are not UTF-8 shown as U+FFFD), escaped as `net_io::PeerText` shows peer text,
//! tabs kept: a control character (a LF or CR in the reply included), a bidi control or a
//! Unicode line or paragraph separator shows as `\n`, `\u{1b}`, `\u{202e}`, `\u{2028}`.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use examples::address::HostArg;
use examples::peer::PeerLine;
use net_io::ByteReadChannel;
use net_sockets::{
    Datagram, MAX_DATAGRAM_SIZE, MAX_DATAGRAM_SIZE_V6, SelectorManager, SocketAddress, a_socket,
};

/// The port of server and client unless told otherwise.
const PORT: u16 = 9003;

/// How long the client waits for each echo.
const REPLY_TIMEOUT: Duration = Duration::from_secs(3);

/// UDP echo server and client in one program.
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version, disable_help_subcommand = true, arg_required_else_help = false)]
struct Args {
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Echo every datagram back to its sender.
    Server {
        /// Address to listen on: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
        /// (127.0.0.1:9003, [::1]:9003).
        #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
        host: HostArg,
        /// Port to listen on (0: any free port) [default: 9003]
        #[arg(value_parser = examples::address::port)]
        port: Option<u16>,
    },
    /// Send each line of stdin as a datagram and print each reply (waiting at most 3 seconds
    /// for each).
    Client {
        /// Server to send to: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
        /// (127.0.0.1:9003, [::1]:9003).
        #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
        host: HostArg,
        /// Its port [default: 9003]
        #[arg(value_parser = examples::address::port)]
        port: Option<u16>,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    let status = examples::run("udp-echo", dispatch(args)).await;
    let _ = std::io::stdout().flush();
    std::process::exit(if status == ExitCode::SUCCESS { 0 } else { 1 });
}

async fn dispatch(args: Args) -> anyhow::Result<()> {
    let selector = SelectorManager::new();
    match args.mode {
        Mode::Server { host, port } => {
            let (host, port) = examples::address::endpoint::<Args>(&host, port, Some(PORT));
            server(&selector, &host, port).await
        }
        Mode::Client { host, port } => {
            let (host, port) = examples::address::destination::<Args>(&host, port, Some(PORT));
            client(&selector, &host, port).await
        }
    }
}

async fn server(selector: &SelectorManager, host: &str, port: u16) -> anyhow::Result<()> {
    let socket = a_socket(selector)
        .udp()
        .bind((host, port))
        .await
        .with_context(|| format!("cannot bind {}", examples::join_host_port(host, port)))?;
    examples::say!("UDP echo server is listening at {}", socket.local_address());
    loop {
        match socket.receive().await {
            Ok(datagram) => {
                examples::say!(
                    "Echoing {} bytes to {}",
                    datagram.packet.len(),
                    datagram.address
                );
                if let Err(e) = socket.send(datagram).await {
                    examples::say_err!("udp-echo: send failed: {e}");
                }
            }
            // One datagram's error (the OS's, or a jumbogram dropped); the socket keeps working.
            Err(net_sockets::Error::Io(e)) => examples::say_err!("udp-echo: receive failed: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
}

async fn client(selector: &SelectorManager, host: &str, port: u16) -> anyhow::Result<()> {
    let socket = a_socket(selector)
        .udp()
        .connect((host, port))
        .await
        .with_context(|| format!("cannot reach {}", examples::join_host_port(host, port)))?;
    let remote = socket.remote_address();
    let limit = largest_datagram(&remote);
    let mut stdin = ByteReadChannel::new(tokio::io::stdin());
    while let Some(line) = next_line(&mut stdin, limit)
        .await
        .context("reading stdin")?
    {
        socket
            .send(Datagram::new(line, remote.clone())?)
            .await
            .with_context(|| format!("sending to {remote}"))?;
        let reply = tokio::time::timeout(REPLY_TIMEOUT, socket.receive())
            .await
            .map_err(|_| anyhow::anyhow!("no reply from {remote} within {REPLY_TIMEOUT:?}"))?
            .with_context(|| format!("no reply from {remote}"))?;
        examples::say!("{}", PeerLine(&String::from_utf8_lossy(&reply.packet)));
    }
    Ok(())
}

/// The next line of `input` as bytes, without its LF or CRLF (a last line may lack it); `None`
/// at the end of input.
///
/// # Errors
///
/// [`net_io::Error::TooLongLine`] for a line over `limit` bytes, and the input's errors.
async fn next_line(input: &mut ByteReadChannel, limit: usize) -> net_io::Result<Option<Vec<u8>>> {
    let too_long = || net_io::Error::TooLongLine { limit };
    // One more byte than `limit`, for the CR of a CRLF.
    let line = match input.read_until(b"\n", limit + 1).await {
        Ok(Some(line)) if line.ends_with(b"\r") => line.slice(..line.len() - 1),
        Ok(Some(line)) => line,
        Ok(None) => return Ok(None),
        // A last line without a line ending: what is left.
        Err(net_io::Error::UnexpectedEof { .. }) => input.read_remaining(limit + 1).await?,
        Err(net_io::Error::TooLongLine { .. }) => return Err(too_long()),
        Err(e) => return Err(e),
    };
    if line.len() > limit {
        return Err(too_long());
    }
    Ok(Some(line.into()))
}

/// The largest payload one datagram to `remote` carries: more over IPv6 than over IPv4 (an
/// IPv4-mapped IPv6 address is reached over IPv4).
fn largest_datagram(remote: &SocketAddress) -> usize {
    match remote.as_inet() {
        Some(inet) if inet.socket_addr().ip().to_canonical().is_ipv6() => MAX_DATAGRAM_SIZE_V6,
        _ => MAX_DATAGRAM_SIZE,
    }
}
