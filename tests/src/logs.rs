//! Tracing subscribers that keep the libraries' events as lines: [`Loud`], those at `info` and
//! above, for tests that check what an operator's log would show; [`Every`], every one, debug
//! included (set one as a thread's default subscriber, on a current-thread runtime, to see
//! exactly that thread's events).

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// The events of the `net_*` crates above `debug`, each as `LEVEL name=value ...` (clones
/// share the lines).
pub type Loud = Lines<false>;

/// Every event of the `net_*` crates, whatever its level, each as its message then its other
/// fields (`message name=value ...`; clones share the lines).
pub type Every = Lines<true>;

/// The events of the `net_*` crates as lines: [`Loud`] (`EVERY` false) or [`Every`].
#[derive(Clone, Debug, Default)]
pub struct Lines<const EVERY: bool>(Arc<Mutex<Vec<String>>>);

impl<const EVERY: bool> Lines<EVERY> {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl<const EVERY: bool> Subscriber for Lines<EVERY> {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if !EVERY && *event.metadata().level() > Level::INFO {
            return;
        }
        /// The message (kept apart for [`Every`]) and the other fields.
        #[derive(Default)]
        struct Line {
            message: Option<String>,
            fields: String,
        }
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                match &mut self.message {
                    Some(message) if field.name() == "message" => {
                        *message = format!("{value:?}");
                    }
                    _ => {
                        let _ = write!(self.fields, " {}={value:?}", field.name());
                    }
                }
            }
        }
        let line = if EVERY {
            let mut line = Line {
                message: Some(String::new()),
                ..Line::default()
            };
            event.record(&mut line);
            line.message.unwrap_or_default() + &line.fields
        } else {
            let mut line = Line::default();
            event.record(&mut line);
            event.metadata().level().to_string() + &line.fields
        };
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
