//! Shared fixtures for the integration tests in `tests/tests/`.
//!
//! - [`within`]: a hang safety net around a future (tests synchronise on events; this only
//!   turns a bug that hangs into a failure).
//! - [`echo_server`]: a TCP or Unix echo server on `net-sockets` that echoes each connection
//!   until the client's FIN, then half-closes its side.
//! - [`fd_count`]: open descriptors of this process, from `/proc/self/fd`.
//! - [`tls`]: a test PKI (a CA and the leaves it issues), made at test time with rcgen.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};

pub mod fault;
pub mod tls;

/// The hang safety net used by the tests.
pub const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Awaits `future`, panicking if it takes longer than [`HANG_LIMIT`].
pub async fn within<F: Future>(future: F) -> F::Output {
    match tokio::time::timeout(HANG_LIMIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("operation hung for {HANG_LIMIT:?}"),
    }
}

/// Echoes everything a socket receives back to it until the peer's FIN, then half-closes.
pub async fn echo(mut socket: Socket) -> net_sockets::Result<u64> {
    let mut input = socket.open_read_channel()?;
    // auto_flush: `copy_to` flushes only at the end, and an interactive peer needs each chunk.
    let mut output = socket.open_write_channel(true)?;
    let copied = input.copy_to(&mut output, u64::MAX).await?;
    output.flush_and_close().await?;
    Ok(copied)
}

/// Binds a TCP echo server on `127.0.0.1:0` and serves every connection in its own task.
pub async fn echo_server(selector: &SelectorManager) -> Arc<ServerSocket> {
    let server = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .expect("bind echo server");
    serve_echo(server)
}

/// Serves `server` as an echo server in a background task until it is closed.
pub fn serve_echo(server: ServerSocket) -> Arc<ServerSocket> {
    let server = Arc::new(server);
    let listener = Arc::clone(&server);
    tokio::spawn(async move {
        while let Ok(socket) = listener.accept().await {
            tokio::spawn(echo(socket));
        }
    });
    server
}

/// The number of open descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("read /proc/self/fd")
        .count()
}

/// A deterministic payload of `len` bytes (not all equal, so misordering shows).
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Runs the test `child` of the current test binary again, in a child process whose descriptor
/// limit is `fd_limit` (`ulimit -n`), with the environment variable `env` set so that the child
/// test knows it is the child. Panics unless the child succeeds and prints `marker`; returns its
/// stdout and stderr.
///
/// A low limit in a child touches no other test of the binary.
pub fn run_child_with_fd_limit(child: &str, env: &str, fd_limit: u32, marker: &str) -> String {
    let exe = std::env::current_exe().expect("the test binary's path");
    let script = format!(
        r#"ulimit -n {fd_limit} && exec "$0" --exact {child} --nocapture --test-threads=1"#
    );
    let output = std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(exe)
        .env(env, "1")
        .output()
        .expect("could not start the child test process");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "child failed:\n{text}");
    assert!(text.contains(marker), "child did not run:\n{text}");
    text
}
