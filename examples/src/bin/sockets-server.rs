//! The seed's socket server: greets each client and answers every line with `Hello, <line>!`.
//!
//! ```text
//! cargo run -p examples --bin sockets-server -- [HOST] [PORT]    # default 127.0.0.1 9002
//! ```
//!
//! Unlike the documentation's Kotlin sample, it stops answering when the client leaves (no
//! `Hello, null!` loop), and a line over 8192 bytes ends only that connection.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use net_io::LineEnding;
use net_sockets::{Socket, a_socket};

/// The longest line the server accepts, in bytes.
const LINE_LIMIT: usize = 8192;

/// How long a connection that broke the rules is drained before it is closed.
const DRAIN_TIME: Duration = Duration::from_secs(1);

#[tokio::main]
async fn main() -> ExitCode {
    examples::run("sockets-server", serve()).await
}

async fn serve() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (host, port) = examples::host_and_port(&args, "127.0.0.1", 9002)?;
    let selector = net_sockets::SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .bind((host.as_str(), port))
        .await
        .with_context(|| format!("cannot listen at {host}:{port}"))?;
    println!("Server is listening at {}", server.local_address());
    loop {
        let socket = server.accept().await.context("accept failed")?;
        println!("Accepted {}", socket.remote_address());
        tokio::spawn(greet(socket));
    }
}

/// One client: the prompt, then a greeting per line until the client closes its side.
async fn greet(mut socket: Socket) {
    let remote = socket.remote_address();
    if let Err(e) = converse(&mut socket).await {
        println!("Connection with {remote} ended: {e}");
    }
    socket.close();
}

async fn converse(socket: &mut Socket) -> net_sockets::Result<()> {
    let mut input = socket.open_read_channel()?;
    let mut output = socket.open_write_channel(true)?;
    output.write_string_utf8("Please enter your name\n").await?;
    loop {
        match input.read_line(LINE_LIMIT, LineEnding::Default).await {
            Ok(Some(name)) => {
                output
                    .write_string_utf8(&format!("Hello, {name}!\n"))
                    .await?
            }
            Ok(None) => return Ok(()),
            Err(e @ net_io::Error::TooLongLine { .. }) => {
                let notice =
                    format!("Line too long (limit {LINE_LIMIT} bytes), closing the connection\n");
                output.write_string_utf8(&notice).await?;
                // Send FIN, then drain what the client still sends for a moment: closing with
                // unread input would reset the connection and could destroy the notice.
                output.flush_and_close().await?;
                let _ = tokio::time::timeout(DRAIN_TIME, input.discard(u64::MAX)).await;
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        }
    }
}
