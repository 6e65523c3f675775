//! The seed's TLS client: sends `GET /` over TLS and prints the response until the server closes.
//!
//! ```text
//! cargo run -p examples --bin sockets-client-tls -- [HOST] [PORT]   # default youtrack.jetbrains.com 443
//!     [--ca FILE]      # trust the CA certificates in this PEM file instead of the bundled roots
//!     [--insecure]     # accept any server certificate (the Kotlin sample's trust-all mode)
//!     [--timeout SECS] # give up on a server silent this long (default 30)
//! ```
//!
//! The certificate is verified against HOST by default, with the bundled Mozilla roots. The
//! request is `GET / HTTP/1.1` with `Host` (plus `:PORT` when it is not 443) and
//! `Connection: close`. The response goes to stdout as it arrives, escaped as
//! `net_io::PeerText` shows peer text (see `examples::peer::PeerBytes`): its line endings (LF,
//! CRLF) and tabs stay, but a bare CR, an ESC sequence or another control character, a bidi
//! control or a Unicode line or paragraph separator shows as `\r`, `\u{1b}`, `\u{202e}`,
//! `\u{2028}`, so that a hostile server cannot drive the terminal; bytes that are not UTF-8 show
//! as U+FFFD. A UTF-8 text response without these prints byte for byte. What the handshake
//! negotiated goes to stderr. A server that ends the connection without TLS's `close_notify`
//! makes the program fail after printing what arrived, since the response may then be cut
//! short.
//!
//! A server that sends nothing, or takes nothing, for `--timeout` seconds (connecting
//! included) makes the program fail with status 1 (`timed out: nothing from HOST:PORT for N s`),
//! after it ends its TLS session cleanly (`close_notify`): the socket's `socket_timeout` and the
//! connect's `connect_timeout`. It bounds silence, not the whole response: one that keeps
//! coming, however slowly, is printed to its end. The TLS handshake has its own limit of 10
//! seconds.
//!
//! A stdout that takes nothing more (`| head -c1`) makes the program fail with status 1
//! (`cannot write to stdout: ...`), also after it ends its TLS session cleanly.

// The argument docs are clap's --help text, where [::1] is an IPv6 literal, not a doc link.
#![allow(rustdoc::broken_intra_doc_links)]

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use examples::peer::PeerBytes;
use net_tls::TlsExt;
use tokio::io::AsyncWriteExt;

/// What failed when the response cannot be written out: the words of `examples::say!`, whose
/// line-by-line printing does not fit a response copied piece by piece as it comes.
const STDOUT_GONE: &str = "cannot write to stdout";

/// Sends `GET /` over TLS and prints the response (the Ktor sample's TLS client).
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Server to connect to, whose certificate must be valid for this name: a name or an IP
    /// address (IPv6: ::1 or [::1]), or HOST:PORT (localhost:9443, [::1]:9443).
    #[arg(default_value = "youtrack.jetbrains.com", value_parser = examples::address::host)]
    host: examples::address::HostArg,
    /// Its port [default: 443]
    #[arg(value_parser = examples::address::port)]
    port: Option<u16>,
    #[command(flatten)]
    trust: examples::tls::Trust,
    /// Give up when the server sends nothing (or takes nothing) for this many seconds,
    /// connecting included.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = examples::cli::at_least_one_second)]
    timeout: Duration,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    args.trust.check::<Args>();
    let (host, port) = examples::address::destination::<Args>(&args.host, args.port, Some(443));
    examples::run("sockets-client-tls", fetch(args, host, port)).await
}

async fn fetch(args: Args, host: String, port: u16) -> anyhow::Result<()> {
    let Args { trust, timeout, .. } = args;
    let config = trust.config()?;

    let selector = net_sockets::SelectorManager::new();
    let builder = net_sockets::a_socket(&selector)
        .tcp()
        .connect_timeout(timeout)
        .socket_timeout(timeout);
    let socket = examples::connect_with(builder, &host, port).await?;
    let mut tls = socket
        .tls(config)
        .await
        .with_context(|| format!("no TLS with {}", examples::join_host_port(&host, port)))?;
    examples::say_err!(
        "Connected to {}: {}",
        tls.remote_address(),
        examples::describe_session(&tls)
    );

    let mut output = tls.open_write_channel(false)?;
    let request = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        host_header(&host, port)
    );
    output.write_string_utf8(&request).await?;
    output.flush().await?;

    let mut input = tls.open_read_channel()?;
    let printed = print_response(&mut input).await;
    // Ends the session cleanly (`close_notify`, then FIN) also when giving up on a silent
    // server, or on a stdout that is gone (`| head -c1`): the server sees a client that left,
    // not a cut connection.
    tls.close();
    let ended = printed.context(STDOUT_GONE)?;
    match ended {
        Ok(()) => {}
        Err(net_io::Error::Timeout) => anyhow::bail!(
            "timed out: nothing from {} for {} s (see --timeout)",
            examples::join_host_port(&host, port),
            timeout.as_secs()
        ),
        Err(e) => return Err(e).context("reading the response"),
    }
    selector.close();
    Ok(())
}

/// Copies the response to stdout as it comes, escaped (a hostile server cannot drive the
/// terminal), until its end or a failed read: `Err` when stdout does not take it, else how the
/// response ended (what arrived before a failed read is printed first).
async fn print_response(
    input: &mut net_io::ByteReadChannel,
) -> std::io::Result<Result<(), net_io::Error>> {
    let mut stdout = tokio::io::stdout();
    let mut buffer = vec![0; 16 * 1024];
    let mut response = PeerBytes::default();
    let mut shown = String::new();
    let ended = loop {
        let n = match input.read_available(&mut buffer).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        shown.clear();
        response.push(&buffer[..n], &mut shown);
        stdout.write_all(shown.as_bytes()).await?;
        stdout.flush().await?;
    };
    // What waited for more: a CR, the start of a character.
    shown.clear();
    response.finish(&mut shown);
    stdout.write_all(shown.as_bytes()).await?;
    stdout.flush().await?;
    Ok(ended)
}

/// The `Host` header's value: the host (an IPv6 literal in brackets), and the port unless it
/// is HTTPS's 443.
fn host_header(host: &str, port: u16) -> String {
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    }
}
