//! A restarted server binding again the port its closed listener held: with nothing left on
//! the port, and (`SO_REUSEADDR`) with the old listener's connections still open or in
//! `TIME_WAIT`.
//!
//! These tests have a binary of their own, and run one at a time: Linux lets a `bind` to port
//! 0 with `SO_REUSEADDR` (every listener's default) pick a port whose only sockets are such
//! connections, so a test running at the same time could listen on the very port a test here
//! binds again, and make that bind fail. (Seen: about one run in six, when these tests ran
//! among the option tests that bind listeners to port 0.)
#![cfg(target_os = "linux")]

use std::io::ErrorKind;
use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::within;

/// Held by each test for its whole run.
static ALONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A listener reuses its address by default "so a restarted server binds": a port whose
/// server-side connection is in `TIME_WAIT` can be bound again at once; with
/// `reuse_address(false)` it cannot. Two live listeners on one port are refused either way
/// (Linux), unless both set `reuse_port`.
#[tokio::test]
async fn reuse_address_lets_a_restarted_server_bind_past_time_wait() {
    let _alone = ALONE.lock().await;
    let selector = SelectorManager::new();
    for reuse in [true, false] {
        let listener = a_socket(&selector)
            .tcp()
            .reuse_address(reuse)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.port().unwrap();
        // A second live listener on the port: refused.
        let e = a_socket(&selector)
            .tcp()
            .reuse_address(reuse)
            .bind(("127.0.0.1", port))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        // The server closes first: its side goes to TIME_WAIT.
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let accepted = within(listener.accept()).await.unwrap();
        accepted.close();
        let mut buf = [0u8; 1];
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        assert_eq!(std::io::Read::read(&mut client, &mut buf).unwrap(), 0);
        drop(client);
        listener.close();
        let again = a_socket(&selector)
            .tcp()
            .reuse_address(reuse)
            .bind(("127.0.0.1", port))
            .await;
        if reuse {
            assert!(again.is_ok(), "restart past TIME_WAIT: {again:?}");
        } else {
            let e = again.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        }
    }
    // Both with SO_REUSEPORT: both bind.
    let first = a_socket(&selector)
        .tcp()
        .reuse_port(true)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let second = a_socket(&selector)
        .tcp()
        .reuse_port(true)
        .bind(("127.0.0.1", first.port().unwrap()))
        .await;
    assert!(second.is_ok(), "{second:?}");
}

/// A restarted server binds its port while connections the old listener accepted are still
/// open (they inherit its `SO_REUSEADDR`): the graceful-restart case of "a restarted server
/// binds".
#[tokio::test]
async fn a_restarted_listener_binds_while_old_connections_are_open() {
    let _alone = ALONE.lock().await;
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    assert!(accepted.with_sock_ref(|s| s.reuse_address()).unwrap());
    listener.close();
    let again = a_socket(&selector).tcp().bind(("127.0.0.1", port)).await;
    assert!(again.is_ok(), "{again:?}");
    drop(accepted);
}

/// A closed listener's port, with no connection left on it, binds again at once, ten times.
#[tokio::test]
async fn the_same_port_can_be_bound_again_after_close() {
    let _alone = ALONE.lock().await;
    let selector = SelectorManager::new();
    let first = a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = first.port().unwrap();
    assert_ne!(port, 0);
    first.close();
    for _ in 0..10 {
        let again = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", port))
            .await
            .unwrap();
        assert_eq!(again.port(), Some(port));
        again.close();
    }
}
