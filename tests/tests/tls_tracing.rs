//! The TLS handshake's `debug` events are in the connection's `connection` span, as the
//! tracing table of `net_sockets::guide` says: recorded here with a subscriber of this test
//! binary's own (each test runs on a current-thread runtime in its own thread, so a
//! thread-local subscriber sees exactly its own events).

use std::sync::{Arc, Mutex};

use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::{connect, garbage_client};
use net_tests::within;
use net_tls::TlsExt;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// What the subscriber saw.
#[derive(Default)]
struct Seen {
    /// The name of each span, by id (ids are indices + 1).
    spans: Vec<&'static str>,
    /// The spans entered now on this thread, innermost last.
    entered: Vec<u64>,
    /// Each event: its message and the name of its span (explicit parent, or the one entered).
    events: Vec<(String, Option<&'static str>)>,
}

/// Records the events of net-tls and net-sockets with the span each one is in.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    /// The span names of the events whose message is `message`.
    fn spans_of(&self, message: &str) -> Vec<Option<&'static str>> {
        let seen = self.0.lock().unwrap();
        seen.events
            .iter()
            .filter(|(m, _)| m == message)
            .map(|(_, span)| *span)
            .collect()
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_")
    }
    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let mut seen = self.0.lock().unwrap();
        seen.spans.push(attributes.metadata().name());
        Id::from_u64(seen.spans.len() as u64)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        struct Message(String);
        impl tracing::field::Visit for Message {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        let mut seen = self.0.lock().unwrap();
        let id = match event.parent() {
            Some(parent) => Some(parent.into_u64()),
            None if event.is_contextual() => seen.entered.last().copied(),
            None => None,
        };
        let span = id.map(|id| seen.spans[(id - 1) as usize]);
        seen.events.push((message.0, span));
    }
    fn enter(&self, id: &Id) {
        self.0.lock().unwrap().entered.push(id.into_u64());
    }
    fn exit(&self, _: &Id) {
        self.0.lock().unwrap().entered.pop();
    }
}

/// Runs `test` on a current-thread runtime with `recorder` recording.
fn recording(test: impl std::future::Future<Output = ()>, recorder: &Recorder) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(recorder.clone(), || runtime.block_on(test));
}

/// `tls handshake done` (client and server) and `tls handshake failed` are `debug` events in
/// the `connection` span of the socket whose handshake it was.
#[test]
fn tls_handshake_events_are_in_the_connection_span() {
    let recorder = Recorder::default();
    recording(
        async {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let port = listener.port().unwrap();
            let ca = TestCa::new("test ca");
            let server_config = ca.server(&["localhost"]).server_config().build().unwrap();

            // A handshake that succeeds on both sides.
            let accept = async {
                let socket = listener.accept().await.unwrap();
                socket.tls_server(&server_config).await.unwrap()
            };
            let client = async {
                connect(
                    &selector,
                    "localhost",
                    port,
                    ca.client_config().build().unwrap(),
                )
                .await
                .unwrap()
            };
            let (server_side, client_side) = within(async { tokio::join!(accept, client) }).await;
            drop((server_side, client_side));

            // A handshake that fails: garbage where the ClientHello should be.
            let _garbage = garbage_client(port).await;
            let socket = within(listener.accept()).await.unwrap();
            assert!(within(socket.tls_server(&server_config)).await.is_err());
        },
        &recorder,
    );
    assert_eq!(
        recorder.spans_of("tls handshake done"),
        [Some("connection"), Some("connection")],
        "the handshake-done events (server and client) and their spans"
    );
    assert_eq!(
        recorder.spans_of("tls handshake failed"),
        [Some("connection")],
        "the handshake-failed event and its span"
    );
}
