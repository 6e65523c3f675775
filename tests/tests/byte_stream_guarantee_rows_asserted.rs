//! Claims of the byte streams' rows of `guarantees.md` that none of the tests the rows named
//! asserted.

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager};
use net_tests::loopback::{connected_pair, tcp_listener};
use net_tests::within;

/// Row "The socket is closed (by `close`, or by the selector) while lines are buffered": the
/// buffered whole lines first, then `Error::SelectorClosed` on every later read, for the
/// selector's close too. (The named test read buffered lines after the socket's `close` only;
/// after the selector's, it read a connection that had nothing buffered.)
#[tokio::test]
async fn lines_buffered_when_the_selector_closes_are_read_before_selector_closed() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let mut client = client.connection().unwrap();
    let mut server = server.connection().unwrap();
    client.output.write_string_utf8("a\nb\nc\n").await.unwrap();
    client.output.flush().await.unwrap();
    let a = within(server.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(a.as_deref(), Some("a"));
    selector.close();
    for expected in ["b", "c"] {
        let line = within(server.input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line.as_deref(), Some(expected));
    }
    for _ in 0..2 {
        let e = within(server.input.read_line(64, LineEnding::Default))
            .await
            .unwrap_err();
        assert!(matches!(Error::from(e), Error::SelectorClosed));
    }
}
