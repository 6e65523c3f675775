//! Helpers shared by the integration tests: the scripted `AsyncRead` and the reference model
//! (in `model.rs`, shared with the fuzz targets), a one-shot poll, a hang guard, and the seeded
//! tests' generator (`rng.rs`).
#![allow(dead_code)]

pub(crate) mod child;
pub(crate) mod model;
pub(crate) mod rng;

use std::future::Future;
use std::task::Poll;
use std::time::Duration;

#[allow(unused_imports)]
pub(crate) use model::{ChunkedReader, Step};

/// How long a test may wait for something that must happen before it is declared hung.
pub(crate) const HANG_GUARD: Duration = Duration::from_secs(10);

/// Polls `fut` exactly once, then drops it. `Some(output)` if it completed on that poll.
///
/// This is what a `tokio::select!` does to the branch that loses: the future is polled, makes
/// whatever progress it can, and is dropped.
pub(crate) async fn poll_once<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| match fut.as_mut().poll(cx) {
        Poll::Ready(v) => Poll::Ready(Some(v)),
        Poll::Pending => Poll::Ready(None),
    })
    .await
}

/// Awaits `fut`, failing the test if it takes longer than [`HANG_GUARD`] (a hang, not a
/// timing assertion).
pub(crate) async fn guard<F: Future>(fut: F) -> F::Output {
    tokio::time::timeout(HANG_GUARD, fut)
        .await
        .expect("operation hung (hang guard expired)")
}

/// Splits `data` into chunks of the given sizes (cycled; sizes of 0 count as 1); the last chunk
/// takes what is left.
pub(crate) fn split_by(data: &[u8], sizes: &[usize]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut pos = 0;
    let mut i = 0;
    while pos < data.len() {
        let size = sizes
            .get(i % sizes.len().max(1))
            .copied()
            .unwrap_or(1)
            .max(1);
        let end = (pos + size).min(data.len());
        out.push(data[pos..end].to_vec());
        pos = end;
        i += 1;
    }
    out
}

/// What a [`MockWriter`] does on its next `poll_write`, `poll_flush` or `poll_shutdown`.
#[derive(Debug)]
pub(crate) enum Act {
    /// Take at most this many bytes (a write) or succeed (a flush or a shutdown).
    Take(usize),
    /// Return `Poll::Pending` without waking anyone: the transport is stuck.
    Stall,
    /// Fail with this error.
    Fail(std::io::Error),
}

/// What a [`MockWriter`] saw: the bytes it accepted, and how often it was flushed and shut down.
#[derive(Debug, Default)]
pub(crate) struct MockLog {
    pub(crate) accepted: Vec<u8>,
    /// How many `poll_write` calls took bytes.
    pub(crate) write_calls: usize,
    pub(crate) flushes: usize,
    pub(crate) shutdowns: usize,
    /// Acts for the coming `poll_write` calls, in order; when empty, writes take everything.
    pub(crate) writes: std::collections::VecDeque<Act>,
    /// Acts for the coming `poll_flush` calls; when empty, flushes succeed.
    pub(crate) flush_acts: std::collections::VecDeque<Act>,
    /// Acts for the coming `poll_shutdown` calls; when empty, shutdowns succeed.
    pub(crate) shutdown_acts: std::collections::VecDeque<Act>,
}

/// A transport that records what it accepted and follows a script of stalls and failures.
/// Clones share the log, so a test keeps one while the channel owns another.
#[derive(Clone, Debug, Default)]
pub(crate) struct MockWriter(pub(crate) std::sync::Arc<std::sync::Mutex<MockLog>>);

impl MockWriter {
    pub(crate) fn log(&self) -> std::sync::MutexGuard<'_, MockLog> {
        self.0.lock().unwrap()
    }

    /// Queues acts for the coming writes.
    pub(crate) fn on_write(&self, acts: impl IntoIterator<Item = Act>) {
        self.log().writes.extend(acts);
    }

    /// Queues acts for the coming flushes.
    pub(crate) fn on_flush(&self, acts: impl IntoIterator<Item = Act>) {
        self.log().flush_acts.extend(acts);
    }

    /// Queues acts for the coming shutdowns.
    pub(crate) fn on_shutdown(&self, acts: impl IntoIterator<Item = Act>) {
        self.log().shutdown_acts.extend(acts);
    }

    /// Everything accepted so far.
    pub(crate) fn accepted(&self) -> Vec<u8> {
        self.log().accepted.clone()
    }

    /// How many shutdowns succeeded.
    pub(crate) fn shutdowns(&self) -> usize {
        self.log().shutdowns
    }
}

/// `Error::Timeout` as a transport reports it.
pub(crate) fn timeout() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::TimedOut, net_io::Error::Timeout)
}

impl tokio::io::AsyncWrite for MockWriter {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        src: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let mut log = self.log();
        let n = match log.writes.pop_front() {
            None => src.len(),
            Some(Act::Take(n)) => n.min(src.len()),
            Some(Act::Stall) => return Poll::Pending,
            Some(Act::Fail(e)) => return Poll::Ready(Err(e)),
        };
        log.accepted.extend_from_slice(&src[..n]);
        log.write_calls += usize::from(n > 0);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut log = self.log();
        match log.flush_acts.pop_front() {
            None | Some(Act::Take(_)) => {
                log.flushes += 1;
                Poll::Ready(Ok(()))
            }
            Some(Act::Stall) => Poll::Pending,
            Some(Act::Fail(e)) => Poll::Ready(Err(e)),
        }
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> Poll<std::io::Result<()>> {
        let mut log = self.log();
        match log.shutdown_acts.pop_front() {
            None | Some(Act::Take(_)) => {
                log.shutdowns += 1;
                Poll::Ready(Ok(()))
            }
            Some(Act::Stall) => Poll::Pending,
            Some(Act::Fail(e)) => Poll::Ready(Err(e)),
        }
    }
}

/// The `tracing` events seen while a closure ran: (level, fields).
#[derive(Clone, Default)]
pub(crate) struct Capture(std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>);

pub(crate) struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        use std::fmt::Write;
        let _ = write!(self.0, "{}={:?} ", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

impl Capture {
    pub(crate) fn during(f: impl FnOnce()) -> Vec<(tracing::Level, String)> {
        let capture = Capture::default();
        tracing::subscriber::with_default(capture.clone(), f);
        capture.0.lock().unwrap().clone()
    }
}
