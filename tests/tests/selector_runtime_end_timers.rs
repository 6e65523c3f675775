//! The end of a selector's runtime racing a task of another runtime that waits on one of the
//! selector's timers (review hy-rtend).

use std::future::Future;
use std::pin::pin;
use std::sync::mpsc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use net_sockets::layer::RawStream;
use net_sockets::{Error, Plain, SelectorManager};
use net_tests::loopback::{connected_pair, tcp_listener};

/// A layer's handshake timer (`RawStream::sleep`, what bounds a TLS handshake) registered,
/// then polled by a thread of another runtime (here none) after the selector's runtime ended
/// and shut its timer down: it fails with `SelectorClosed`. Before, the poll panicked in
/// tokio's timer ("A Tokio 1.x context was found, but it is being shutdown",
/// `runtime/time/entry.rs`), as a TLS handshake polled by another runtime did when that
/// runtime's end came between its socket's check of the close and its poll of the timer.
#[test]
fn a_layer_timer_polled_after_the_selectors_runtime_ended_fails_with_selector_closed() {
    for multi_thread in [false, true] {
        let dying = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        let (timers, made) = mpsc::channel();
        let selector = dying.block_on(async {
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let (client, _server_side) = connected_pair(&selector, &listener).await;
            // A layer that takes its timer out and gives up (which closes the socket).
            let started = client
                .connection()
                .unwrap()
                .upgrade(
                    Duration::from_secs(60),
                    || Error::Timeout,
                    |e| e,
                    |raw: RawStream, _| {
                        timers.send(raw.sleep(Duration::from_secs(60))).unwrap();
                        async { Err::<Plain, Error>(Error::Closed) }
                    },
                )
                .await;
            assert!(started.is_err());
            selector
        });
        let timer = made.recv().unwrap();
        let mut timer = pin!(timer);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(
            timer.as_mut().poll(&mut cx).is_pending(),
            "multi-thread {multi_thread}"
        );
        drop(dying);
        assert!(selector.is_closed());
        let fired = timer.as_mut().poll(&mut cx);
        assert!(
            matches!(fired, Poll::Ready(Err(Error::SelectorClosed))),
            "multi-thread {multi_thread}: {fired:?}"
        );
    }
}
