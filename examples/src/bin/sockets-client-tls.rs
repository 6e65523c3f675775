//! The seed's TLS client: sends `GET /` over TLS and prints the response until the server closes.
//!
//! ```text
//! cargo run -p examples --bin sockets-client-tls -- [HOST] [PORT]   # default youtrack.jetbrains.com 443
//!     [--ca FILE]      # trust the CA certificates in this PEM file instead of the bundled roots
//!     [--insecure]     # accept any server certificate (the Kotlin sample's trust-all mode)
//! ```
//!
//! The certificate is verified against HOST by default, with the bundled Mozilla roots. The
//! request is `GET / HTTP/1.1` with `Host` (plus `:PORT` when it is not 443) and
//! `Connection: close`. The response goes to stdout as received; what the handshake negotiated
//! goes to stderr. A server that ends the connection without TLS's `close_notify` makes the
//! program fail after printing what arrived, since the response may then be cut short.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use net_tls::TlsExt;
use tokio::io::AsyncWriteExt;

/// What failed when the response cannot be written out: the words of `examples::say!`, whose
/// line-by-line printing does not fit a response copied as bytes.
const STDOUT_GONE: &str = "cannot write to stdout";

/// Sends `GET /` over TLS and prints the response (the Ktor sample's TLS client).
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Server to connect to; its certificate must be valid for this name.
    #[arg(default_value = "youtrack.jetbrains.com")]
    host: String,
    /// Its port.
    #[arg(default_value_t = 443)]
    port: u16,
    #[command(flatten)]
    trust: examples::tls::Trust,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    args.trust.check::<Args>();
    examples::run("sockets-client-tls", fetch(args)).await
}

async fn fetch(args: Args) -> anyhow::Result<()> {
    let Args { host, port, trust } = args;
    let config = trust.config()?;

    let selector = net_sockets::SelectorManager::new();
    let socket = examples::connect(&selector, &host, port).await?;
    let mut tls = socket
        .tls(config)
        .await
        .with_context(|| format!("no TLS with {}", examples::join_host_port(&host, port)))?;
    eprintln!(
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
    let mut stdout = tokio::io::stdout();
    let mut buffer = vec![0; 16 * 1024];
    loop {
        let read = input.read_available(&mut buffer).await;
        let n = match read {
            Ok(n) => n,
            Err(e) => {
                stdout.flush().await.context(STDOUT_GONE)?;
                return Err(e).context("reading the response");
            }
        };
        if n == 0 {
            break;
        }
        stdout.write_all(&buffer[..n]).await.context(STDOUT_GONE)?;
        stdout.flush().await.context(STDOUT_GONE)?;
    }
    tls.close();
    selector.close();
    Ok(())
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
