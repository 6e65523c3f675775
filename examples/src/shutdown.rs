//! Graceful shutdown for the example servers, on SIGINT and SIGTERM, made of tokio parts: a
//! [`watch`] channel tells every connection that shutdown began, and a [`JoinSet`] holds the
//! connection tasks so that the server can count them, wait for them and cut the rest.
//!
//! [`serve_until_signal`] is the whole sequence, in one function so that a library API for
//! graceful shutdown can replace it in one place:
//!
//! 1. accept connections (each runs in a task of its own, with a [`ShutdownNotice`]) until
//!    SIGINT or SIGTERM;
//! 2. print `Shutting down (N open)` and close the listener at once (new connects are
//!    refused);
//! 3. tell every connection; each finishes the reply it is writing, says goodbye in its own
//!    protocol and closes;
//! 4. wait for them at most the grace period, then cut those still open;
//! 5. print `Server stopped`.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use net_sockets::{ServerSocket, Socket};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::watch;
use tokio::task::JoinSet;

/// The line the example servers send each open connection when they shut down.
pub const SHUTDOWN_LINE: &str = "Server is shutting down\n";

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

/// How a connection learns that the server is shutting down; each connection task gets one.
#[derive(Clone, Debug)]
pub struct ShutdownNotice(watch::Receiver<bool>);

impl ShutdownNotice {
    /// A notice that never comes, for a server without graceful shutdown.
    pub fn never() -> ShutdownNotice {
        // Without a sender, `begun` waits for ever.
        let (_, rx) = watch::channel(false);
        ShutdownNotice(rx)
    }

    /// Waits until shutdown has begun (at once if it already has).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: use it in `tokio::select!` beside a cancel-safe read.
    pub async fn begun(&mut self) {
        if self.0.wait_for(|begun| *begun).await.is_err() {
            // The server dropped its side without starting a shutdown: nothing will come.
            std::future::pending::<()>().await;
        }
    }

    /// Whether shutdown has begun.
    pub fn has_begun(&self) -> bool {
        *self.0.borrow()
    }
}

/// A server's open connections, each a task of its own.
#[derive(Debug)]
pub struct Connections {
    tasks: JoinSet<()>,
    notice: watch::Sender<bool>,
}

impl Default for Connections {
    fn default() -> Self {
        Connections::new()
    }
}

impl Connections {
    /// No connections yet.
    pub fn new() -> Connections {
        Connections {
            tasks: JoinSet::new(),
            notice: watch::Sender::new(false),
        }
    }

    /// Runs a connection: `serve` gets the notice it must watch for shutdown.
    pub fn spawn<Fut>(&mut self, serve: impl FnOnce(ShutdownNotice) -> Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .spawn(serve(ShutdownNotice(self.notice.subscribe())));
    }

    /// How many connections are still open (their tasks still running).
    pub fn open(&mut self) -> usize {
        self.reap();
        self.tasks.len()
    }

    /// Forgets the connections that have finished.
    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            report_panic(done);
        }
    }

    /// Waits for a connection to finish (for ever when there is none).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn finished(&mut self) {
        match self.tasks.join_next().await {
            Some(done) => report_panic(done),
            None => std::future::pending().await,
        }
    }

    /// Tells every connection that shutdown began, waits at most `grace` for them to finish,
    /// and cuts (aborts, which closes their sockets) those still running. Returns how many were
    /// cut.
    pub async fn shut_down(mut self, grace: Duration) -> usize {
        self.notice.send_replace(true);
        let all_done = async {
            while let Some(done) = self.tasks.join_next().await {
                report_panic(done);
            }
        };
        let _ = tokio::time::timeout(grace, all_done).await;
        let cut = self.tasks.len();
        // Aborted tasks drop their sockets at their next await point, which closes them.
        self.tasks.shutdown().await;
        cut
    }
}

/// A connection task that panicked says so on stderr; the server goes on.
fn report_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        if e.is_panic() {
            eprintln!("a connection task panicked: {e}");
        }
    }
}

/// Accepts connections on `server` until SIGINT or SIGTERM, then shuts down gracefully (the
/// steps are in the [module docs](self)); returns when the server has stopped.
///
/// `accepted` is called for each accepted socket with the server's [`Connections`]; it
/// decides what to do with the socket (usually [`Connections::spawn`] a task that serves it).
/// While `max_open` connections are open, no new one is accepted (they wait in the listen
/// backlog).
///
/// # Errors
///
/// An accept error that the listener does not retry by itself.
pub async fn serve_until_signal(
    server: &ServerSocket,
    mut signals: Signals,
    max_open: usize,
    grace: Duration,
    mut accepted: impl FnMut(Socket, &mut Connections),
) -> anyhow::Result<()> {
    let mut connections = Connections::new();
    loop {
        tokio::select! {
            biased;
            () = signals.recv() => break,
            () = connections.finished() => {}
            socket = server.accept(), if connections.open() < max_open => {
                accepted(socket.context("accept failed")?, &mut connections);
            }
        }
    }
    println!("Shutting down ({} open)", connections.open());
    server.close();
    let cut = connections.shut_down(grace).await;
    if cut > 0 {
        println!(
            "Closed {cut} connection{} still open after the grace period",
            if cut == 1 { "" } else { "s" }
        );
    }
    println!("Server stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connections_are_counted_told_and_cut() {
        let mut connections = Connections::new();
        // One finishes when told, one ignores the notice, one is already done.
        connections.spawn(|mut stop| async move { stop.begun().await });
        connections.spawn(|_| std::future::pending::<()>());
        connections.spawn(|_| async {});
        connections.finished().await;
        assert_eq!(connections.open(), 2);
        let cut = connections.shut_down(Duration::from_millis(100)).await;
        assert_eq!(cut, 1);
    }

    #[tokio::test]
    async fn a_notice_that_never_comes() {
        let mut never = ShutdownNotice::never();
        assert!(!never.has_begun());
        let waited = tokio::time::timeout(Duration::from_millis(20), never.begun()).await;
        assert!(waited.is_err());
    }
}
