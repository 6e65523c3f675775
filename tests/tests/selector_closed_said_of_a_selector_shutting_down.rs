//! `Error::SelectorClosed` is also the error of a listener bound (or adopted) while its
//! selector's graceful shutdown runs, as the variant's docs say, when the selector is not
//! closed: its `Display` text says so too, rather than that the selector closed.

use std::time::Duration;

use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::{pending_after_one_poll, within};
use tokio::net::TcpStream;

#[tokio::test]
async fn a_bind_during_a_graceful_shutdown_is_not_told_the_selector_closed() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let _client = within(TcpStream::connect(("127.0.0.1", port)))
        .await
        .unwrap();
    // A connection that holds the shutdown in its grace period.
    let held = within(server.accept()).await.unwrap();
    let mut shutdown = Box::pin(selector.shutdown(Duration::from_secs(60)));
    assert!(pending_after_one_poll(shutdown.as_mut()).await);

    let late = a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await;
    let e = late.unwrap_err();
    assert!(matches!(e, Error::SelectorClosed), "{e:?}");
    assert!(!selector.is_closed(), "the selector is still open");
    let shown = e.to_string();
    assert!(
        shown.contains("shutting down"),
        "SelectorClosed shows {shown:?} for a selector that is shutting down, not closed"
    );

    drop(held);
    let report = within(shutdown).await;
    assert_eq!((report.finished, report.cut), (1, 0), "{report:?}");

    // After the close, the same text is still true.
    let closed = a_socket(&selector).tcp().bind(("127.0.0.1", 0)).await;
    let e = closed.unwrap_err();
    assert!(matches!(e, Error::SelectorClosed), "{e:?}");
    assert!(selector.is_closed());
    assert!(e.to_string().contains("closed"), "{e}");
}
