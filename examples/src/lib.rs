//! Shared pieces of the example programs in `src/bin/`.
//!
//! - [`address`]: how every program reads HOST and PORT (`HOST PORT` or `HOST:PORT`, an IPv6
//!   address in brackets before its port), so that all read them alike.
//! - [`cli`]: the command-line conventions every program follows (`--help` exits 0, a bad
//!   argument exits 2 with one line, a runtime failure exits 1 with one line), and [`say!`],
//!   which prints a line on stdout and treats a stdout that is gone as a runtime failure
//!   ([`say_err!`], its twin for stderr, never panics when stderr is gone).
//! - [`peer`]: what the clients print of what a server sent, escaped as
//!   [`net_io::PeerText`] escapes peer text ([`peer::PeerLine`] for a line, [`peer::PeerBytes`]
//!   for a response copied as it comes), so that a server cannot forge what the terminal shows.
//! - [`greet`]: the seed's greeting conversation, used by `sockets-server` and
//!   `sockets-server-tls`.
//! - [`shutdown`]: graceful shutdown on SIGINT/SIGTERM for `sockets-server`,
//!   `sockets-server-tls`, `chat-server` and `starttls-server`.
//! - [`tls`]: certificates, trust and session descriptions for the TLS programs.

pub mod address;
pub mod cli;
pub mod peer;
pub mod shutdown;
pub mod tls;

pub use cli::run;
pub use tls::{describe_session, sha256_fingerprint};

use net_sockets::ShutdownSignal;
use shutdown::SHUTDOWN_LINE;

/// Connects to `host:port` with `builder`'s options (timeouts; a name is resolved, every
/// address tried), with the error the example programs print when nobody answers.
///
/// # Errors
///
/// `cannot connect to HOST:PORT`, with the reason.
pub async fn connect_with(
    builder: net_sockets::TcpSocketBuilder,
    host: &str,
    port: u16,
) -> anyhow::Result<net_sockets::Socket> {
    use anyhow::Context;
    builder
        .connect((host, port))
        .await
        .with_context(|| format!("cannot connect to {}", join_host_port(host, port)))
}

/// `HOST:PORT` as it can be typed back on a command line: an IPv6 address in brackets
/// (`[::1]:8080`), as `SocketAddr` prints it, whether `host` came with its brackets or not.
///
/// # Examples
///
/// ```
/// assert_eq!(examples::join_host_port("::1", 8080), "[::1]:8080");
/// assert_eq!(examples::join_host_port("[::1]", 8080), "[::1]:8080"); // typed in brackets
/// assert_eq!(examples::join_host_port("localhost", 80), "localhost:80");
/// ```
pub fn join_host_port(host: &str, port: u16) -> String {
    let bracketed = host.starts_with('[') && host.ends_with(']');
    if host.contains(':') && !bracketed {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The longest line the greeting servers accept, in bytes.
pub const LINE_LIMIT: usize = 8192;

/// How long a greeting server drains a connection that broke the rules before closing it.
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(1);

/// How a [`greet`] conversation ended without an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The client closed its side (end of input); every line it sent was answered.
    ClientLeft,
    /// The server is shutting down: the client was told (`Server is shutting down`) and the
    /// write side is closed. The caller drains the input until the client leaves (so that the
    /// close does not turn into a reset) for as long as the grace period lets it.
    ShutDown,
}

/// Tells a client whose line was over [`LINE_LIMIT`] why it is left, closes the write side, and
/// drains the input for a moment (so that the notice is not destroyed by a reset).
async fn refuse_long_line(
    input: &mut net_io::ByteReadChannel,
    output: &mut net_io::ByteWriteChannel,
) -> net_io::Result<()> {
    let notice = format!("Line too long (limit {LINE_LIMIT} bytes), closing the connection\n");
    output.write_string_utf8(&notice).await?;
    output.flush_and_close().await?;
    let _ = tokio::time::timeout(DRAIN_TIME, input.discard(u64::MAX)).await;
    Ok(())
}

/// The greeting conversation of `sockets-server` over any pair of channels: sends
/// `Please enter your name`, then answers each line with `Hello, <line>!` until the client
/// closes its side or the server shuts down. A line ends at LF or CRLF
/// ([`net_io::LineEnding::Default`]): a lone CR is part of it, where the seed's
/// `readUTF8Line` ends a line there too.
///
/// When `stop` comes, a line the client already sent is still answered (the read is tried
/// before the notice); then the client gets `Server is shutting down` and the write side is
/// closed. A reply being written is always finished first: the notice is only looked at
/// between lines.
///
/// A line over [`LINE_LIMIT`] bytes gets a notice, then the write side is closed and the input
/// drained for a moment (so that the notice is not destroyed by a reset), and the error is
/// returned.
///
/// # Errors
///
/// The channels' errors, and [`net_io::Error::TooLongLine`].
pub async fn greet(
    input: &mut net_io::ByteReadChannel,
    output: &mut net_io::ByteWriteChannel,
    stop: &ShutdownSignal,
) -> net_io::Result<Ending> {
    output.write_string_utf8("Please enter your name\n").await?;
    // One line buffer and one reply buffer for the whole conversation: no allocation per line.
    let mut name = String::new();
    let mut reply = String::new();
    // One wait for the signal for the whole conversation: it registers once, not per line.
    let stop = stop.requested();
    tokio::pin!(stop);
    loop {
        name.clear();
        // Both arms are cancel safe: a line is consumed (and `name` touched) only when it is
        // there whole.
        let line = tokio::select! {
            biased;
            line = input.read_line_to(&mut name, LINE_LIMIT, net_io::LineEnding::Default) => line,
            () = &mut stop => {
                output.write_string_utf8(SHUTDOWN_LINE).await?;
                output.flush_and_close().await?;
                return Ok(Ending::ShutDown);
            }
        };
        match line {
            Ok(Some(_)) => {
                reply.clear();
                reply.push_str("Hello, ");
                reply.push_str(&name);
                reply.push_str("!\n");
                output.write_string_utf8(&reply).await?
            }
            Ok(None) => return Ok(Ending::ClientLeft),
            Err(e @ net_io::Error::TooLongLine { .. }) => {
                // Boxed: the rare path's futures (the drain's timer among them) would otherwise
                // make every conversation's future, and so every connection's task, larger.
                Box::pin(refuse_long_line(input, output)).await?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
    }
}
