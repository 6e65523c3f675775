//! Graceful shutdown for the example servers on SIGINT and SIGTERM, on net-sockets' own
//! graceful shutdown ([`ServerSocket::shutdown`]).
//!
//! [`serve_until_signal`] is the whole sequence:
//!
//! 1. accept connections (each runs in a task of its own, watching
//!    [`Socket::shutdown_signal`](net_sockets::Socket::shutdown_signal)) until SIGINT or
//!    SIGTERM;
//! 2. print `Shutting down (N open)`; the listener closes at once (new connects are refused;
//!    the accept loop and the shutdown run in one task, so no `accept` is under way as it
//!    closes: see the restarts of [`ServerSocket::close`]);
//! 3. every connection learns that shutdown began; each finishes the reply it is writing, says
//!    goodbye in its own protocol and closes;
//! 4. the listener waits for them at most the grace period, then closes those still open; a
//!    second SIGINT or SIGTERM ends the wait at once (`Second signal: not waiting for the grace
//!    period`), as a second Ctrl-C ends most servers;
//! 5. the connections' tasks end (each reports how its connection ended: a socket can close
//!    itself, when the client leaves after the server closed its side, before its task has
//!    said so), waited for at most [`TASKS_WAIT`];
//! 6. the server's last report, if it has one (see [`serve_until_signal_then`]);
//! 7. print `Server stopped`.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use net_sockets::{ServerSocket, Socket};
use tokio::signal::unix::{Signal, SignalKind, signal};

/// The line the example servers send each open connection when they shut down.
pub const SHUTDOWN_LINE: &str = "Server is shutting down\n";

/// How long [`serve_until_signal`], once every connection is closed, waits for the tasks that
/// served them to end (they print their last lines), before it prints `Server stopped`.
pub const TASKS_WAIT: Duration = Duration::from_secs(1);

/// SIGINT and SIGTERM, caught from the moment [`Signals::install`] returns (install them
/// before announcing that the server listens, so that a signal sent right after the
/// announcement is not lost).
#[derive(Debug)]
pub struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    /// Starts catching SIGINT and SIGTERM: from now on they no longer end the process.
    ///
    /// # Errors
    ///
    /// The operating system's, when a handler cannot be installed.
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next SIGINT or SIGTERM.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a signal that arrives while no one waits is kept for the next call.
    pub async fn recv(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// Accepts connections on `server` until SIGINT or SIGTERM, then shuts down gracefully (the
/// steps are in the [module docs](self)), or at once on a second signal; returns when the
/// server has stopped.
///
/// `accepted` is called for each accepted socket and returns the task that serves it (which
/// watches its shutdown signal); the task is spawned here, and the shutdown waits for it (at
/// most [`TASKS_WAIT`] after the connections closed), so that nothing it prints comes after
/// `Server stopped`.
///
/// # Errors
///
/// An accept error that the listener does not retry by itself.
pub async fn serve_until_signal<F>(
    server: &ServerSocket,
    signals: Signals,
    grace: Duration,
    accepted: impl FnMut(Socket) -> F,
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_until_signal_then(server, signals, grace, accepted, || {}).await
}

/// As [`serve_until_signal`], with `last` called once the shutdown has waited for the
/// connections' tasks (step 5 of the [module docs](self)), just before `Server stopped` is
/// printed: for a server's last report of its own (what it printed
/// after `serve_until_signal` returned would come after `Server stopped`).
///
/// # Errors
///
/// As [`serve_until_signal`] (`last` is not called then).
pub async fn serve_until_signal_then<F>(
    server: &ServerSocket,
    mut signals: Signals,
    grace: Duration,
    mut accepted: impl FnMut(Socket) -> F,
    last: impl FnOnce(),
) -> anyhow::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    // Each connection's task holds a sender: the receiver's `recv` ends (`None`) once all of
    // them have ended.
    let (running, mut all_ended) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        tokio::select! {
            biased;
            () = signals.recv() => break,
            socket = server.accept() => {
                let task = accepted(socket.context("accept failed")?);
                let running = running.clone();
                tokio::spawn(async move {
                    task.await;
                    drop(running);
                });
            }
        }
    }
    crate::say!("Shutting down ({} open)", server.stats().open);
    let (report, when) = tokio::select! {
        report = server.shutdown(grace) => (report, " after the grace period"),
        () = signals.recv() => {
            crate::say!("Second signal: not waiting for the grace period");
            // The shutdown begun above stays begun; this one closes what is still open now.
            (server.shutdown(Duration::ZERO).await, "")
        }
    };
    if report.cut > 0 {
        crate::say!(
            "Closed {} connection{} still open{when}",
            report.cut,
            if report.cut == 1 { "" } else { "s" }
        );
    }
    drop(running);
    let _ = tokio::time::timeout(TASKS_WAIT, all_ended.recv()).await;
    last();
    crate::say!("Server stopped");
    Ok(())
}
