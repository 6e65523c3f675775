//! The guide's tracing example (`net_sockets::guide`, section *Tracing*; `no_run`: it takes
//! a listener from elsewhere) run on loopback, with what the text beside it says: "Your own
//! events are not inside these spans (the spans are the crate's own) [...]. To tie your events
//! to a connection, give the connection's task a span of yours".
//!
//! The example's events name the target `test` (the recorder keeps the crates' and those);
//! otherwise it is as written.

use net_sockets::SelectorManager;
use net_tests::logs::{EventSeen, Traced};
use net_tests::loopback::{connect, tcp_listener};
use net_tests::within;
use tracing::Instrument;

fn names(event: &EventSeen) -> Vec<&'static str> {
    event.spans.iter().map(|span| span.name).collect()
}

/// An event of ours right after `accept` is in no span of the crate's; one of the
/// connection's task is in the example's `client` span, which names the peer.
#[test]
fn our_events_are_in_our_spans_only() {
    let traced = Traced::default();
    let client_address = tracing::subscriber::with_default(traced.clone(), || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let selector = SelectorManager::new();
            let server = tcp_listener(&selector).await;
            let client = connect(&selector, server.local_address()).await;

            // The example.
            let socket = within(server.accept()).await.unwrap();
            tracing::info!(target: "test", "ours, after accept");
            let span =
                tracing::info_span!(target: "test", "client", remote = %socket.remote_address());
            let task = tokio::spawn(
                async move {
                    tracing::info!(target: "test", "serving");
                    // ... the conversation ...
                    drop(socket);
                }
                .instrument(span),
            );
            within(task).await.unwrap();
            client.local_address()
        })
    });

    // The crate's own event of that accept is in its `connection` span; ours is not.
    let crates = traced.named("accepted");
    assert_eq!(crates.len(), 1);
    assert_eq!(crates[0].span(), Some("connection"));
    let accepted = traced.named("ours, after accept");
    assert_eq!(accepted.len(), 1);
    assert!(accepted[0].spans.is_empty(), "{:?}", names(&accepted[0]));

    let serving = traced.named("serving");
    assert_eq!(serving.len(), 1);
    assert_eq!(names(&serving[0]), ["client"]);
    let remote = serving[0].spans[0]
        .fields
        .iter()
        .find(|(name, _)| name == "remote");
    assert_eq!(
        remote.map(|(_, value)| value.clone()),
        Some(client_address.to_string())
    );
}
