//! The loop of the seeded stress tests: rounds chosen by environment variables, bounded in
//! count and time, every failure collected, and the process's sockets counted before and after.

use std::future::Future;
use std::time::{Duration, Instant};

/// Runs `round(seed)` for the seeds [`rng::seeds`](crate::rng::seeds) chooses (`{prefix}_SEED`,
/// `{prefix}_ROUNDS`, `default_rounds`), one after another. A run of the default count also
/// stops after `default_limit` (a machine under load runs fewer rounds); a chosen count runs
/// whole (within an hour). Then waits (at most 5 s) for the sockets the rounds opened to close,
/// and panics with every failure a round returned, or if the process holds more sockets than
/// before (a leak). Each failure is also printed when it happens.
pub async fn run_rounds<F, Fut>(
    prefix: &str,
    default_rounds: u64,
    default_limit: Duration,
    mut round: F,
) where
    F: FnMut(u64) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let seeds = crate::rng::seeds(prefix, default_rounds);
    let limit = if std::env::var_os(format!("{prefix}_ROUNDS")).is_some() {
        Duration::from_secs(3600)
    } else {
        default_limit
    };
    let before = crate::probe::socket_count();
    let started = Instant::now();
    let mut failures = Vec::new();
    for seed in seeds {
        if started.elapsed() > limit {
            break;
        }
        if let Err(e) = round(seed).await {
            eprintln!("{e}");
            failures.push(e);
        }
    }
    let waited = Instant::now();
    while crate::probe::socket_count() > before && waited.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let after = crate::probe::socket_count();
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );
    assert!(after <= before, "sockets: {before} before, {after} after");
}

/// How a round of a server stress test ends its server (see [`end_server`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ServerEnd {
    /// Nothing: the clients end their connections.
    Nothing,
    /// The listener's graceful `shutdown(grace)`.
    ListenerShutdown,
    /// The listener's `close()`.
    ListenerClose,
    /// The selector's `close()`.
    SelectorClose,
    /// The selector's graceful `shutdown(grace)`.
    SelectorShutdown,
}

/// Ends `server` as `end` says. After a graceful shutdown (which must return within 15 s),
/// checks what both shutdowns promise once they return: no connection of the listener open;
/// and that the report counts at most `cap` connections. `what` names the round in the error.
pub async fn end_server(
    end: ServerEnd,
    server: &net_sockets::ServerSocket,
    selector: &net_sockets::SelectorManager,
    grace: Duration,
    cap: usize,
    what: &str,
) -> Result<(), String> {
    let limit = Duration::from_secs(15);
    let report = match end {
        ServerEnd::Nothing => None,
        ServerEnd::ListenerShutdown => Some(
            tokio::time::timeout(limit, server.shutdown(grace))
                .await
                .map_err(|_| format!("{what}: the listener's shutdown hung"))?,
        ),
        ServerEnd::ListenerClose => {
            server.close();
            None
        }
        ServerEnd::SelectorClose => {
            selector.close();
            None
        }
        ServerEnd::SelectorShutdown => Some(
            tokio::time::timeout(limit, selector.shutdown(grace))
                .await
                .map_err(|_| format!("{what}: the selector's shutdown hung"))?,
        ),
    };
    if let Some(report) = report {
        // Every connection open when it began finished or was cut: none is open now.
        if server.stats().open != 0 {
            return Err(format!("{what}: {report:?}, then {:?}", server.stats()));
        }
        if report.finished + report.cut > cap {
            return Err(format!("{what}: {report:?} counts more than the cap"));
        }
    }
    Ok(())
}
