//! `Socket::shutdown_requested`, made to be a `tokio::select!` branch beside a read: a future
//! pinned once and selected on `&mut` in a loop (as `ShutdownSignal::requested`'s docs advise)
//! is polled again after it completed, when the loop goes round once more after the signal
//! (to finish the exchange under way). It must answer `Ready` again, as `ShutdownSignal`'s
//! does, not panic (an `async fn`'s future panics when polled after it completed).

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use net_sockets::SelectorManager;
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::{pending_after_one_poll, within};

#[tokio::test]
async fn shutdown_requested_polled_again_after_it_completed_is_ready_again() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let mut requested = pin!(server.shutdown_requested());
    assert!(pending_after_one_poll(requested.as_mut()).await);
    let signal = server.shutdown_signal();
    let mut signal_requested = pin!(signal.requested());
    let watch = async {
        requested.as_mut().await;
        signal_requested.as_mut().await;
        // The loop's next pass polls both again.
        let again = std::future::poll_fn(|cx| {
            Poll::Ready((
                requested.as_mut().poll(cx).is_ready(),
                signal_requested.as_mut().poll(cx).is_ready(),
            ))
        })
        .await;
        server.close();
        again
    };
    let (report, again) =
        within(async { tokio::join!(listener.shutdown(Duration::from_secs(5)), watch) }).await;
    assert_eq!(again, (true, true), "polled again after the signal");
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");
    drop(client);
}
