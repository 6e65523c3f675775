//! The seed's socket server: greets each client and answers every line with `Hello, <line>!`.
//!
//! ```text
//! cargo run -p examples --bin sockets-server -- [HOST] [PORT]    # default 127.0.0.1 9002
//! ```
//!
//! Unlike the documentation's Kotlin sample, it stops answering when the client leaves (no
//! `Hello, null!` loop), and a line over 8192 bytes ends only that connection.

use std::process::ExitCode;

use anyhow::Context;
use net_sockets::{Socket, a_socket};

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
    examples::greet(&mut input, &mut output).await?;
    Ok(())
}
