//! One mechanism behind the `incoming()` streams: an async operation of a shared core,
//! repeated until the core is closed.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use crate::{Error, Result};

/// The operation in flight. `Sync` (the operations are), so that the streams are `Sync`, as
/// tokio's listener is.
type Op<T> = Pin<Box<dyn Future<Output = Result<T>> + Send + Sync>>;

/// Repeats `start(core)` as a stream: each result is an item, errors included, except
/// [`Error::Closed`] and [`Error::SelectorClosed`], which end the stream.
pub(crate) struct Repeat<C, T> {
    core: Arc<C>,
    start: fn(Arc<C>) -> Op<T>,
    pending: Option<Op<T>>,
    done: bool,
}

impl<C, T> Repeat<C, T> {
    pub(crate) fn new(core: Arc<C>, start: fn(Arc<C>) -> Op<T>) -> Self {
        Repeat {
            core,
            start,
            pending: None,
            done: false,
        }
    }

    pub(crate) fn core(&self) -> &C {
        &self.core
    }

    /// Ends the stream: later polls return `None` without starting the operation again.
    pub(crate) fn end(&mut self) {
        self.done = true;
    }

    pub(crate) fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<T>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let pending = self
            .pending
            .get_or_insert_with(|| (self.start)(Arc::clone(&self.core)));
        let result = ready!(pending.as_mut().poll(cx));
        self.pending = None;
        match result {
            Err(Error::Closed | Error::SelectorClosed) => {
                self.done = true;
                Poll::Ready(None)
            }
            other => Poll::Ready(Some(other)),
        }
    }
}
