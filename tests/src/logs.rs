//! Tracing subscribers that keep the libraries' events as lines: [`Loud`], those at `info` and
//! above, for tests that check what an operator's log would show; [`Every`], every one, debug
//! included (set one as a thread's default subscriber, on a current-thread runtime, to see
//! exactly that thread's events); and [`Traced`], every event with the spans it is in, for
//! tests that hold the events to the guide's table.

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

/// A span that [`Traced`] saw.
#[derive(Clone, Debug)]
pub struct SpanSeen {
    /// The span's name (`connection`, `listener`, `udp`, ...).
    pub name: &'static str,
    /// Its level.
    pub level: Level,
    /// Its fields, each as text (`%x` as its `Display`, `?x` as its `Debug`).
    pub fields: Vec<(String, String)>,
    /// The id of its parent, if any.
    pub parent: Option<u64>,
}

/// An event that [`Traced`] saw.
#[derive(Clone, Debug)]
pub struct EventSeen {
    /// Its level.
    pub level: Level,
    /// Its target (`net_sockets::listener`, ...).
    pub target: String,
    /// Its message.
    pub message: String,
    /// Its other fields, each as text.
    pub fields: Vec<(String, String)>,
    /// The spans it is in, innermost first (its explicit parent, or the span entered then).
    pub spans: Vec<SpanSeen>,
}

impl EventSeen {
    /// The text of the field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The names of its fields, in order.
    pub fn field_names(&self) -> Vec<&str> {
        self.fields.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The name of its innermost span.
    pub fn span(&self) -> Option<&'static str> {
        self.spans.first().map(|s| s.name)
    }
}

#[derive(Debug, Default)]
struct Tree {
    /// By id (ids are indices + 1).
    spans: Vec<SpanSeen>,
    /// The spans entered now, innermost last (one thread: see [`Traced`]).
    entered: Vec<u64>,
    events: Vec<EventSeen>,
}

/// Every event and span of the `net_*` crates (and of targets that start with `test`), with
/// the spans each event is in. For one thread: set it as that thread's default subscriber and
/// run the test on a current-thread runtime, whose tasks (a selector's from
/// `SelectorManager::new` included) all run there; clones share what was seen.
#[derive(Clone, Debug, Default)]
pub struct Traced(Arc<Mutex<Tree>>);

impl Traced {
    /// The events so far.
    pub fn events(&self) -> Vec<EventSeen> {
        self.0.lock().unwrap().events.clone()
    }

    /// The events so far whose message is `message`.
    pub fn named(&self, message: &str) -> Vec<EventSeen> {
        let mut events = self.events();
        events.retain(|e| e.message == message);
        events
    }
}

/// A span's or an event's fields as text.
struct Fields(Vec<(String, String)>);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push((field.name().to_string(), value.to_string()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name().to_string(), format!("{value:?}")));
    }
}

impl Subscriber for Traced {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_") || metadata.target().starts_with("test")
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut fields = Fields(Vec::new());
        attributes.record(&mut fields);
        let mut tree = self.0.lock().unwrap();
        let parent = match attributes.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if attributes.is_contextual() => tree.entered.last().copied(),
            None => None,
        };
        tree.spans.push(SpanSeen {
            name: attributes.metadata().name(),
            level: *attributes.metadata().level(),
            fields: fields.0,
            parent,
        });
        Id::from_u64(tree.spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(Vec::new());
        event.record(&mut fields);
        let message = match fields.0.iter().position(|(n, _)| n == "message") {
            Some(i) => fields.0.remove(i).1,
            None => String::new(),
        };
        let mut tree = self.0.lock().unwrap();
        let mut id = match event.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if event.is_contextual() => tree.entered.last().copied(),
            None => None,
        };
        let mut spans = Vec::new();
        while let Some(i) = id {
            let span = tree.spans[(i - 1) as usize].clone();
            id = span.parent;
            spans.push(span);
        }
        tree.events.push(EventSeen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_string(),
            message,
            fields: fields.0,
            spans,
        });
    }
    fn enter(&self, id: &Id) {
        self.0.lock().unwrap().entered.push(id.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.0.lock().unwrap().entered.pop();
    }
    fn clone_span(&self, id: &Id) -> Id {
        id.clone()
    }
    fn try_close(&self, _: Id) -> bool {
        false
    }
}
