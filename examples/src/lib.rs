//! Shared helpers for the example programs in `src/bin/`.

use std::future::Future;
use std::process::ExitCode;

use anyhow::Context;

/// Parses the optional positional `[HOST] [PORT]` arguments, starting at `args[0]`.
///
/// # Errors
///
/// A port that is not a number from 0 to 65535, or extra arguments.
pub fn host_and_port(
    args: &[String],
    default_host: &str,
    default_port: u16,
) -> anyhow::Result<(String, u16)> {
    if args.len() > 2 {
        anyhow::bail!("unexpected argument {:?} (usage: [HOST] [PORT])", args[2]);
    }
    let host = args
        .first()
        .cloned()
        .unwrap_or_else(|| default_host.to_owned());
    let port = match args.get(1) {
        Some(port) => port
            .parse::<u16>()
            .with_context(|| format!("invalid port {port:?}"))?,
        None => default_port,
    };
    Ok((host, port))
}

/// Runs a program's body: exit status 0 on success, or one line on stderr and status 1.
pub async fn run(name: &str, body: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    match body.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
