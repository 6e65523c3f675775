//! The client side of `starttls-server`: a plain-text SMTP-style conversation upgraded to TLS
//! with `STARTTLS` (RFC 3207), through `connection.tls(config)`.
//!
//! ```text
//! cargo run -p examples --bin starttls-client -- HOST PORT
//!     [--ca FILE]      # trust the CA certificates in this PEM file instead of the bundled roots
//!     [--insecure]     # accept any server certificate
//!     [--timeout SECS] # give up on a server silent, or a reply unfinished, this long (default 30)
//! ```
//!
//! It reads the greeting, sends `EHLO`, checks that `STARTTLS` is offered, sends `STARTTLS`,
//! upgrades, then sends `EHLO`, `NOOP` and `QUIT` over TLS. Every line the server sends is printed
//! without its CRLF, escaped as `net_io::PeerText` shows peer text, tabs kept (a control character,
//! a bidi control or a Unicode line or paragraph separator shows as `\u{1b}`, `\r`, `\u{202e}`,
//! `\u{2028}`: a hostile server cannot drive the terminal), and after the handshake one line says
//! what it negotiated:
//! `TLS: TLS 1.3, TLS13_..., key exchange ..., no ALPN, peer certificate SHA-256 ...`. The
//! certificate is verified against HOST by default. Any reply other than the expected one ends the
//! program with status 1 (the reply quoted in the error, escaped as a Rust string literal is), and
//! so does a server that sends nothing, or takes nothing, for `--timeout` seconds (connecting
//! included): the socket's `socket_timeout` and the connect's `connect_timeout`. A reply has at
//! most [`REPLY_LINES`] lines of at most [`REPLY_LIMIT`] bytes, and must be complete within
//! `--timeout` of the command (or of the connection, for the greeting), however steadily its lines
//! come: a server that trickles a reply for ever, or sends one without end, is given up on (`timed
//! out: no complete reply to EHLO within N s`, `the reply to EHLO has more than 100 lines`). The
//! TLS handshake has its own limit of 10 seconds. After the `221` answer to `QUIT` it sends its
//! `close_notify` and FIN and waits up to `--timeout` for the server's end, then closes (a server
//! that never closes costs that wait, not an error).

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::peer::PeerLine;
use net_io::{ByteReadChannel, ByteWriteChannel, LineEnding};
use net_tls::TlsExt;

/// The longest reply line accepted (RFC 5321 sets 512 octets).
const REPLY_LIMIT: usize = 512;

/// The most lines a reply may have (RFC 5321 sets no limit; an `EHLO` reply lists one
/// extension a line, and servers list a dozen or two). With [`REPLY_LIMIT`], a reply takes at
/// most about 50 KB, whatever the server sends.
const REPLY_LINES: usize = 100;

/// The name this client gives in `EHLO`.
const CLIENT_NAME: &str = "starttls-client.localhost";

/// Talks SMTP-style to HOST:PORT and upgrades the connection with STARTTLS.
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Server to connect to, whose certificate must be valid for this name: a name or an IP
    /// address (IPv6: ::1 or [::1]), or HOST:PORT (localhost:9025, [::1]:9025).
    #[arg(value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Its port (unless HOST is HOST:PORT).
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    #[command(flatten)]
    trust: examples::tls::Trust,
    /// Give up when the server sends nothing (or takes nothing) for this many seconds, or has
    /// not completed a reply this long after the command.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = examples::cli::at_least_one_second)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    args.trust.check::<Args>();
    let (host, port) = examples::address::destination::<Args>(&args.host, args.port, None);
    examples::run("starttls-client", talk(args, host, port)).await
}

async fn talk(args: Args, host: String, port: u16) -> anyhow::Result<()> {
    let Args { trust, timeout, .. } = args;
    let config = trust.config()?;
    let selector = net_sockets::SelectorManager::new();
    let builder = net_sockets::a_socket(&selector)
        .tcp()
        .connect_timeout(timeout)
        .socket_timeout(timeout);
    let socket = examples::connect_with(builder, &host, port).await?;
    let mut plain = socket.connection()?;
    let (input, output) = (&mut plain.input, &mut plain.output);
    expect(input, "220", "the greeting", timeout).await?;
    let ehlo = format!("EHLO {CLIENT_NAME}");
    let extensions = command(input, output, &ehlo, "250", timeout).await?;
    if !offers(&extensions, "STARTTLS") {
        anyhow::bail!(
            "{} does not offer STARTTLS",
            examples::join_host_port(&host, port)
        );
    }
    command(input, output, "STARTTLS", "220", timeout).await?;

    let tls = plain
        .tls(config)
        .await
        .with_context(|| format!("no TLS with {}", examples::join_host_port(&host, port)))?;
    examples::say!("TLS: {}", examples::describe_session(&tls));
    let mut secure = tls.connection()?;
    let (input, output) = (&mut secure.input, &mut secure.output);
    let extensions = command(input, output, &ehlo, "250", timeout).await?;
    if offers(&extensions, "STARTTLS") {
        anyhow::bail!(
            "{} still offers STARTTLS over TLS",
            examples::join_host_port(&host, port)
        );
    }
    command(input, output, "NOOP", "250", timeout).await?;
    command(input, output, "QUIT", "221", timeout).await?;
    // The server closes after its answer: its end is awaited as long as any reply is.
    secure.close_gracefully(timeout).await?;
    selector.close();
    Ok(())
}

/// Sends `line` (with CRLF) and reads the reply, which must have status `code`; `timeout` is
/// the socket's, for the error message.
async fn command(
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    line: &str,
    code: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    output.write_string_utf8(&format!("{line}\r\n")).await?;
    output.flush().await?;
    let verb = line.split(' ').next().unwrap_or(line);
    expect(input, code, verb, timeout).await
}

/// Reads one reply, printing its lines: every line but the last has `-` after the status
/// (`250-...`), the last a space or nothing (`250 ...`). The status must be `code`. The reply
/// must be complete within `timeout` (also the socket's timeout) and have at most
/// [`REPLY_LINES`] lines.
async fn expect(
    input: &mut ByteReadChannel,
    code: &str,
    answering: &str,
    timeout: Duration,
) -> anyhow::Result<Vec<String>> {
    let mut lines = Vec::new();
    let read = tokio::time::timeout(timeout, read_reply(input, code, answering, &mut lines)).await;
    match read {
        Ok(Err(e)) if !matches!(e.downcast_ref(), Some(net_io::Error::Timeout)) => Err(e),
        Ok(Ok(())) => Ok(lines),
        // The deadline, or the socket's timeout between two lines: the same limit.
        _ => {
            let secs = timeout.as_secs();
            if lines.is_empty() {
                anyhow::bail!("timed out: no reply to {answering} within {secs} s (see --timeout)")
            }
            anyhow::bail!(
                "timed out: no complete reply to {answering} within {secs} s (see --timeout)"
            )
        }
    }
}

/// Reads the lines of one reply into `lines`, as [`expect`] says, without its deadline; fails
/// with [`net_io::Error::Timeout`] itself when the socket times out.
async fn read_reply(
    input: &mut ByteReadChannel,
    code: &str,
    answering: &str,
    lines: &mut Vec<String>,
) -> anyhow::Result<()> {
    loop {
        let line = match input.read_line(REPLY_LIMIT, LineEnding::Default).await {
            Err(e @ net_io::Error::Timeout) => return Err(e.into()),
            line => line,
        };
        let line = line
            .with_context(|| format!("reading the reply to {answering}"))?
            .with_context(|| {
                format!("the server closed the connection before answering {answering}")
            })?;
        examples::say!("{}", PeerLine(&line));
        let last = line.as_bytes().get(3) != Some(&b'-');
        let status_ok = line.starts_with(code);
        lines.push(line);
        if !status_ok {
            anyhow::bail!("unexpected reply to {answering}: {:?}", lines.join(" / "));
        }
        if last {
            return Ok(());
        }
        if lines.len() == REPLY_LINES {
            anyhow::bail!("the reply to {answering} has more than {REPLY_LINES} lines");
        }
    }
}

/// Whether an EHLO reply lists `extension` (one of the lines after the first).
fn offers(reply: &[String], extension: &str) -> bool {
    reply.iter().skip(1).any(|line| {
        line.get(4..)
            .and_then(|rest| rest.split(' ').next())
            .is_some_and(|keyword| keyword.eq_ignore_ascii_case(extension))
    })
}
