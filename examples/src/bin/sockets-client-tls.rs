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
use net_sockets::a_socket;
use net_tls::{TlsConfig, TlsExt};
use tokio::io::AsyncWriteExt;

const USAGE: &str = "usage: [HOST] [PORT] [--ca FILE] [--insecure]";

#[tokio::main]
async fn main() -> ExitCode {
    examples::run("sockets-client-tls", fetch()).await
}

async fn fetch() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flags = examples::Flags::parse(&args, &["--ca"], &["--insecure"]).context(USAGE)?;
    let (host, port) = examples::host_and_port(&flags.positional, "youtrack.jetbrains.com", 443)?;

    let mut config = TlsConfig::builder();
    match (flags.value("--ca"), flags.is_set("--insecure")) {
        (Some(_), true) => anyhow::bail!("--ca and --insecure exclude each other ({USAGE})"),
        (Some(ca), false) => config = config.add_root_certificates_pem_file(ca)?,
        (None, true) => {
            eprintln!(
                "warning: --insecure: the server's certificate is not verified; \
                 anyone on the path can read and change this connection"
            );
            config = config.dangerous_accept_any_server_certificate();
        }
        (None, false) => {}
    }
    let config = config.build()?;

    let selector = net_sockets::SelectorManager::new();
    let socket = a_socket(&selector)
        .tcp()
        .connect((host.as_str(), port))
        .await
        .with_context(|| format!("cannot connect to {host}:{port}"))?;
    let mut tls = socket
        .tls(config)
        .await
        .with_context(|| format!("no TLS with {host}:{port}"))?;
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
                stdout.flush().await?;
                return Err(e).context("reading the response");
            }
        };
        if n == 0 {
            break;
        }
        stdout.write_all(&buffer[..n]).await?;
        stdout.flush().await?;
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
