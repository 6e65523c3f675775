//! The seed's socket client: prints every line from the server and sends each line of stdin.
//!
//! ```text
//! cargo run -p examples --bin sockets-client -- [HOST] [PORT]    # default 127.0.0.1 9002
//! printf 'Alice\nBob\n' | cargo run -p examples --bin sockets-client
//!     [--timeout SECS]    # give up on a server silent this long (default: never)
//! ```
//!
//! A server's line is printed escaped as `net_io::PeerText` shows peer text (see
//! `examples::peer`), tabs kept: a control character (an ESC sequence, a bare CR, a backspace),
//! a bidi control (U+202A to U+202E, U+2066 to U+2069) or a Unicode line or paragraph separator
//! shows as `\u{1b}`, `\r`, `\u{202e}`, `\u{2028}`, so that a hostile server cannot clear the
//! screen, write over a line or reorder what the terminal shows. Plain text prints as it came.
//!
//! When the server closes the connection it prints `Server closed a connection` and exits 0.
//! At the end of stdin it half-closes (the server sees the end of input) and exits once the
//! server has answered and closed. A line longer than 64 KiB, from the server or on stdin,
//! ends it with status 1 (`reading from HOST:PORT: line longer than the limit of 65536
//! bytes`, or `reading stdin: ...`).
//!
//! By default it waits for the server as long as the connection lasts, as a chat client must
//! (`chat-server` may have nothing to say for a long time), and a connect as long as the system
//! lets it. With `--timeout SECS`, a server that sends nothing, or takes nothing, for SECS
//! seconds (connecting included) ends the program with status 1 (`timed out: nothing from
//! HOST:PORT for N s`, or `timed out: HOST:PORT took nothing for N s`): the socket's
//! `socket_timeout` and the connect's `connect_timeout`.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::peer::PeerLine;
use net_io::{ByteReadChannel, LineEnding};

/// The longest line accepted from the server or from stdin, in bytes.
const LINE_LIMIT: usize = 64 * 1024;

/// Prints every line from the server and sends each line of stdin (the Ktor sample's client).
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Server to connect to: a name or an IP address (IPv6: ::1 or [::1]), or HOST:PORT
    /// (127.0.0.1:9002, [::1]:9002).
    #[arg(default_value = "127.0.0.1", value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Its port [default: 9002]
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    /// Give up when the server sends nothing (or takes nothing) for this many seconds,
    /// connecting included (default: wait as long as the connection lasts).
    #[arg(long, value_name = "SECS", value_parser = examples::cli::at_least_one_second)]
    timeout: Option<Duration>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    let (host, port) = examples::address::destination::<Args>(&args.host, args.port, Some(9002));
    let status = examples::run("sockets-client", chat(host, port, args.timeout)).await;
    // stdin is read on a blocking thread that may still wait for input; do not wait for it.
    let _ = std::io::stdout().flush();
    std::process::exit(if status == ExitCode::SUCCESS { 0 } else { 1 });
}

async fn chat(host: String, port: u16, timeout: Option<Duration>) -> anyhow::Result<()> {
    let selector = net_sockets::SelectorManager::new();
    let mut builder = net_sockets::a_socket(&selector).tcp();
    if let Some(timeout) = timeout {
        builder = builder.connect_timeout(timeout).socket_timeout(timeout);
    }
    let mut socket = examples::connect_with(builder, &host, port).await?;
    let mut input = socket.open_read_channel()?;
    let mut output = socket.open_write_channel(true)?;

    let server = examples::join_host_port(&host, port);
    // A write that times out (the server takes nothing for --timeout) ends the program as a
    // silent server does, not as a server that left: the rest of stdin would go unsent.
    let took_nothing = {
        let server = server.clone();
        move || {
            let secs = timeout.unwrap_or_default().as_secs();
            anyhow::anyhow!("timed out: {server} took nothing for {secs} s (see --timeout)")
        }
    };
    let mut server_lines = tokio::spawn(async move {
        loop {
            let line = match input.read_line(LINE_LIMIT, LineEnding::Default).await {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(net_io::Error::Timeout) => {
                    // Only with --timeout: without it the socket has none.
                    let secs = timeout.unwrap_or_default().as_secs();
                    anyhow::bail!("timed out: nothing from {server} for {secs} s (see --timeout)");
                }
                Err(e) => return Err(e).with_context(|| format!("reading from {server}")),
            };
            examples::say!("{}", PeerLine(&line));
        }
        examples::say!("Server closed a connection");
        anyhow::Ok(())
    });

    let mut stdin = ByteReadChannel::new(tokio::io::stdin());
    let send_stdin = async {
        while let Some(line) = stdin
            .read_line(LINE_LIMIT, LineEnding::Default)
            .await
            .context("reading stdin")?
        {
            match output.write_string_utf8(&format!("{line}\n")).await {
                Ok(()) => {}
                // Only with --timeout: without it the socket has none.
                Err(net_io::Error::Timeout) => return Err(took_nothing()),
                // The server is gone; the reader reports how.
                Err(_) => return anyhow::Ok(()),
            }
        }
        // End of input: half-close, and let the server answer what it has.
        if let Err(net_io::Error::Timeout) = output.flush_and_close().await {
            return Err(took_nothing());
        }
        anyhow::Ok(())
    };
    tokio::select! {
        result = &mut server_lines => {
            result.context("reader task failed")??;
        }
        sent = send_stdin => {
            sent?;
            server_lines.await.context("reader task failed")??;
        }
    }
    socket.close();
    selector.close();
    Ok(())
}
