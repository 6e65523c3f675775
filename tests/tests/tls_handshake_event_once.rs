//! Small review fixes, library side.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use net_sockets::SelectorManager;
use net_tests::loopback::tcp_listener;
use net_tests::pki::TestCa;
use net_tests::tls::garbage_client;
use net_tests::within;
use net_tls::TlsExt;
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

/// Each event of net-tls, written as a log line shows it: the message, then `name=value` for
/// each other field.
#[derive(Clone, Default)]
struct Lines(Arc<Mutex<Vec<String>>>);

impl Subscriber for Lines {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("net_tls")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        struct Line(String);
        impl tracing::field::Visit for Line {
            fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
                if field.name() == "message" {
                    self.0.insert_str(0, &format!("{value:?}"));
                } else {
                    let _ = write!(self.0, " {}={value:?}", field.name());
                }
            }
        }
        let mut line = Line(String::new());
        event.record(&mut line);
        self.0.lock().unwrap().push(line.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// A server's handshake fails (garbage where the ClientHello should be). Before: the
/// `tls handshake failed` event's `error` field was the error's `Display`, which starts with
/// `tls handshake failed: ` too, so the log line said it twice. Now the field is the reason
/// only; the error's `Display` is unchanged.
#[test]
fn tls_handshake_failed_event_says_so_once() {
    let lines = Lines::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let error = tracing::subscriber::with_default(lines.clone(), || {
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let port = listener.port().unwrap();
            let ca = TestCa::new("test ca");
            let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
            let _garbage = garbage_client(port).await;
            let socket = within(listener.accept()).await.unwrap();
            let e = within(socket.tls_server(&server_config))
                .await
                .expect_err("garbage is no ClientHello");
            selector.close();
            e
        })
    });
    let text = error.to_string();
    assert!(
        text.starts_with("tls handshake failed: "),
        "the error's Display is unchanged: {text}"
    );
    let lines = lines.0.lock().unwrap();
    let failed: Vec<_> = lines
        .iter()
        .filter(|l| l.starts_with("tls handshake failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{lines:#?}");
    assert_eq!(
        failed[0].matches("tls handshake failed").count(),
        1,
        "the event's line: {}",
        failed[0]
    );
    let reason = text.trim_start_matches("tls handshake failed: ");
    assert!(
        failed[0].contains(reason),
        "the reason is there: {}",
        failed[0]
    );
}
