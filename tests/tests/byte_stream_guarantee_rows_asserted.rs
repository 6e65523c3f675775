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

/// Row "The socket is closed (by `close`, or cut by a graceful shutdown) while a read waits in
/// a task that runs again only after the selector closed too": `Error::Closed`, on that read
/// and every later one, for a listener's graceful shutdown that cut the connection too. (The
/// named test closed the socket with `close` only.)
#[tokio::test]
async fn a_read_woken_by_a_graceful_shutdowns_cut_reports_closed_though_the_selector_closed_since()
{
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (_client, mut server) = connected_pair(&selector, &listener).await;
    let mut input = server.open_read_channel().unwrap();
    {
        let mut read = std::pin::pin!(input.read_u8());
        assert!(net_tests::pending_after_one_poll(read.as_mut()).await);
        // Cut at the end of a grace period of 0 while the read waits; the selector closes
        // before the read is polled again.
        let report = within(listener.shutdown(std::time::Duration::ZERO)).await;
        assert_eq!(report.cut, 1, "{report:?}");
        selector.close();
        let e = Error::from(within(read).await.unwrap_err());
        assert!(matches!(e, Error::Closed), "{e:?}");
    }
    let e = Error::from(within(input.read_u8()).await.unwrap_err());
    assert!(matches!(e, Error::Closed), "{e:?}");
}

/// Row "`socket_timeout(Duration::ZERO)`": every read or write that has to wait fails at once
/// with `net_io::Error::Timeout`; and row "An idle peer, with `socket_timeout(t)`": kind
/// `TimedOut`, `Error::Timeout` after conversion. (The named tests made only a read wait, and
/// checked neither the kind nor the conversion.)
#[tokio::test]
async fn a_write_that_must_wait_under_a_zero_socket_timeout_fails_at_once() {
    use std::time::{Duration, Instant};
    let selector = SelectorManager::new();
    let listener =
        net_tests::loopback::tcp_listener_with(&selector, |b| b.socket_timeout(Duration::ZERO))
            .await;
    // A peer that reads nothing: once the socket buffers are full, a write has to wait.
    let _peer = tokio::net::TcpStream::connect(("127.0.0.1", listener.port().unwrap()))
        .await
        .unwrap();
    let mut server = within(listener.accept()).await.unwrap();
    let mut output = server.open_write_channel(true).unwrap();
    let chunk = net_tests::payload(64 * 1024);
    let mut failure = None;
    // Far more than loopback's socket buffers hold.
    for _ in 0..1024 {
        let started = Instant::now();
        match within(output.write_fully(&chunk)).await {
            Ok(()) => {}
            Err(e) => {
                failure = Some((e, started.elapsed()));
                break;
            }
        }
    }
    let (e, took) = failure.expect("a write had to wait");
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert_eq!(e.kind(), std::io::ErrorKind::TimedOut, "{e:?}");
    // Not a speed test: the call waited for no timer (the payload's copy takes microseconds).
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(matches!(Error::from(e), Error::Timeout));
}
