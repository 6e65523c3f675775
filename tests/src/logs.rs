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
#[derive(Clone, Debug, Default)]
pub struct Loud(Arc<Mutex<Vec<String>>>);

impl Loud {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Subscriber for Loud {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        if *event.metadata().level() > Level::INFO {
            return;
        }
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                let _ = write!(self.0, " {}={value:?}", field.name());
            }
        }
        let mut line = Line(event.metadata().level().to_string());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Every event of the `net_*` crates, whatever its level, each as its message then its other
/// fields (`message name=value ...`; clones share the lines).
#[derive(Clone, Debug, Default)]
pub struct Every(Arc<Mutex<Vec<String>>>);

impl Every {
    /// The lines so far.
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Subscriber for Every {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        #[derive(Default)]
        struct Line {
            message: String,
            fields: String,
        }
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.message = format!("{value:?}");
                } else {
                    let _ = write!(self.fields, " {}={value:?}", field.name());
                }
            }
        }
        let mut line = Line::default();
        event.record(&mut line);
        self.0.lock().unwrap().push(line.message + &line.fields);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}
