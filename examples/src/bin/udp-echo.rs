//! UDP echo server and client in one program.
//!
//! ```text
//! cargo run -p examples --bin udp-echo -- server [HOST] [PORT]   # default 127.0.0.1 9003
//! cargo run -p examples --bin udp-echo -- client [HOST] [PORT]   # sends stdin lines, prints replies
//! ```
//!
//! The server echoes every datagram back to its sender until SIGINT or SIGTERM; then it prints
//! `Server stopped` and exits 0.
//!
//! The client sends each line of stdin (without its line ending, LF or CRLF) as one datagram,
//! its bytes as they are (UTF-8 or not): a line of up to 65,507 bytes to an IPv4 server, 65,527
//! to an IPv6 one; a longer line ends it with status 1. It waits at most 3 seconds for each
//! echo (UDP may lose a datagram or its echo, and nothing tells); none in that time ends it
//! with status 1 (`no reply from HOST:PORT within 3s`), as does an ICMP error for the
//! datagram (`Connection refused` when nothing listens there). A name with several addresses
//! is tried as a TCP client tries it: until a reply has come, a line refused at one address
//! is sent to the next (`localhost` is `::1` first, then `127.0.0.1`, where `/etc/hosts` says
//! so, while the server listens at 127.0.0.1 by default); the last one's error is reported.
//!
//! A reply is printed as text (bytes that are not UTF-8 shown as U+FFFD), escaped as
//! `net_io::PeerText` shows peer text, tabs kept: a control character (a LF or CR in the reply
//! included), a bidi control or a Unicode line or paragraph separator shows as `\n`,
//! `\u{1b}`, `\u{202e}`, `\u{2028}`.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::io::Write;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use examples::address::HostArg;
use examples::peer::PeerLine;
use examples::shutdown::Signals;
use net_io::ByteReadChannel;
use net_sockets::{
    ConnectedDatagramSocket, Datagram, MAX_DATAGRAM_SIZE, MAX_DATAGRAM_SIZE_V6, SelectorManager,
    SocketAddress, a_socket,
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
    // Caught before the announcement, so that a signal sent right after it is not lost.
    let mut signals = Signals::install().context("cannot install the signal handlers")?;
    examples::say!("UDP echo server is listening at {}", socket.local_address());
    loop {
        // `receive` is cancel safe: a datagram that arrives as the signal does stays unread.
        let received = tokio::select! {
            () = signals.recv() => break,
            received = socket.receive() => received,
        };
        match received {
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
    socket.close();
    examples::say!("Server stopped");
    Ok(())
}

async fn client(selector: &SelectorManager, host: &str, port: u16) -> anyhow::Result<()> {
    let mut socket = a_socket(selector)
        .udp()
        .connect((host, port))
        .await
        .with_context(|| format!("cannot reach {}", examples::join_host_port(host, port)))?;
    // The name's other addresses, resolved when the first is refused (see `other_addresses`).
    let mut others = None;
    // Whether a reply has come: from then on the server is where the socket sends.
    let mut answered = false;
    let mut stdin = ByteReadChannel::new(tokio::io::stdin());
    loop {
        let limit = largest_datagram(&socket.remote_address());
        let Some(line) = next_line(&mut stdin, limit)
            .await
            .context("reading stdin")?
        else {
            break;
        };
        let reply = loop {
            match exchange(&socket, &line).await {
                Err(e) if !answered && refused(&e) => {
                    let others = match &mut others {
                        Some(others) => others,
                        None => others.insert(other_addresses(host, port, &socket).await),
                    };
                    let Some(next) = others.next() else {
                        return Err(e);
                    };
                    socket = a_socket(selector)
                        .udp()
                        .connect(next)
                        .await
                        .with_context(|| {
                            format!("cannot reach {}", examples::join_host_port(host, port))
                        })?;
                    // The next address may be of a family that carries less (IPv4 after IPv6).
                    let limit = largest_datagram(&socket.remote_address());
                    if line.len() > limit {
                        let too_long = net_io::Error::TooLongLine { limit };
                        return Err(anyhow::Error::new(too_long).context("reading stdin"));
                    }
                }
                reply => break reply?,
            }
        };
        answered = true;
        examples::say!("{}", PeerLine(&String::from_utf8_lossy(&reply.packet)));
    }
    Ok(())
}

/// Sends `line` as one datagram and waits at most [`REPLY_TIMEOUT`] for the reply.
///
/// # Errors
///
/// The send's, the receive's (an ICMP error for the datagram: `Connection refused` when
/// nothing listens there), and no reply in time.
async fn exchange(socket: &ConnectedDatagramSocket, line: &[u8]) -> anyhow::Result<Datagram> {
    let remote = socket.remote_address();
    socket
        .send(Datagram::new(line.to_vec(), remote.clone())?)
        .await
        .with_context(|| format!("sending to {remote}"))?;
    tokio::time::timeout(REPLY_TIMEOUT, socket.receive())
        .await
        .map_err(|_| anyhow::anyhow!("no reply from {remote} within {REPLY_TIMEOUT:?}"))?
        .with_context(|| format!("no reply from {remote}"))
}

/// Whether `error` is the kernel's word that nothing listens where the datagram went (an ICMP
/// port unreachable), which a name's next address may make good.
fn refused(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<net_sockets::Error>(),
        Some(net_sockets::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused
    )
}

/// The addresses of `host` after the one `socket` sends to, in the resolver's order (the order
/// in which net-sockets took the first): with a name that has several, such as `localhost`
/// (`::1` and `127.0.0.1` where `/etc/hosts` says so), the server may be at another than the
/// first, which UDP, without a handshake, learns only from a datagram refused. None for an
/// address, or a name that does not resolve now.
async fn other_addresses(
    host: &str,
    port: u16,
    socket: &ConnectedDatagramSocket,
) -> std::vec::IntoIter<SocketAddr> {
    use std::net::ToSocketAddrs;
    let tried = socket.remote_address();
    let tried = tried.as_inet().map(|inet| inet.socket_addr());
    let host = host.to_owned();
    let resolved = tokio::task::spawn_blocking(move || {
        (host.as_str(), port)
            .to_socket_addrs()
            .map(Iterator::collect::<Vec<_>>)
    })
    .await;
    let mut addresses = match resolved {
        Ok(Ok(addresses)) => addresses,
        _ => Vec::new(),
    };
    // Those up to the one tried, which the resolver put first.
    if let Some(at) = addresses.iter().position(|&a| Some(a) == tried) {
        addresses.drain(..=at);
    } else {
        addresses.clear();
    }
    addresses.into_iter()
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
