//! The seed's socket client: prints every line from the server and sends each line of stdin.
//!
//! ```text
//! cargo run -p examples --bin sockets-client -- [HOST] [PORT]    # default 127.0.0.1 9002
//! printf 'Alice\nBob\n' | cargo run -p examples --bin sockets-client
//! ```
//!
//! When the server closes the connection it prints `Server closed a connection` and exits 0.
//! At the end of stdin it half-closes (the server sees the end of input) and exits once the
//! server has answered and closed.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use net_io::{ByteReadChannel, LineEnding};

/// The longest line accepted from the server or from stdin, in bytes.
const LINE_LIMIT: usize = 64 * 1024;

/// Prints every line from the server and sends each line of stdin (the Ktor sample's client).
#[derive(Parser, Debug)]
#[command(name = env!("CARGO_BIN_NAME"), version)]
struct Args {
    /// Server to connect to.
    #[arg(default_value = "127.0.0.1")]
    host: String,
    /// Its port.
    #[arg(default_value_t = 9002)]
    port: u16,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = examples::cli::parse::<Args>();
    let status = examples::run("sockets-client", chat(args)).await;
    // stdin is read on a blocking thread that may still wait for input; do not wait for it.
    let _ = std::io::stdout().flush();
    std::process::exit(if status == ExitCode::SUCCESS { 0 } else { 1 });
}

async fn chat(Args { host, port }: Args) -> anyhow::Result<()> {
    let selector = net_sockets::SelectorManager::new();
    let mut socket = examples::connect(&selector, &host, port).await?;
    let mut input = socket.open_read_channel()?;
    let mut output = socket.open_write_channel(true)?;

    let server = examples::join_host_port(&host, port);
    let mut server_lines = tokio::spawn(async move {
        while let Some(line) = input
            .read_line(LINE_LIMIT, LineEnding::Default)
            .await
            .with_context(|| format!("reading from {server}"))?
        {
            examples::say!("{line}");
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
            if output
                .write_string_utf8(&format!("{line}\n"))
                .await
                .is_err()
            {
                // The server is gone; the reader reports how.
                return anyhow::Ok(());
            }
        }
        // End of input: half-close, and let the server answer what it has.
        let _ = output.flush_and_close().await;
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
