//! `SocketOptions` fields left `None`: most leave the operating system's default, but two do
//! not, as their docs say and the struct's doc says of them: `reuse_address` (on for a TCP
//! listener) and `keep_alive` (on when a `keep_alive_*` parameter is set). Read back with
//! `getsockopt`, the options set through `configure` as a user sets them there.
#![cfg(target_os = "linux")]

use std::time::Duration;

use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::tcp_listener;
use net_tests::within;

/// `reuse_address: None` on a TCP listener is `SO_REUSEADDR` on, not the OS's default (off);
/// `Some(false)` is off; on a client, `None` leaves it off.
#[tokio::test]
async fn reuse_address_left_none_is_on_for_a_tcp_listener_only() {
    let selector = SelectorManager::new();
    let reuse = |value: Option<bool>| {
        let selector = selector.clone();
        async move {
            let listener = a_socket(&selector)
                .tcp()
                .configure(|o| o.reuse_address = value)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            listener.with_sock_ref(|s| s.reuse_address()).unwrap()
        }
    };
    assert!(reuse(None).await, "None on a TCP listener: SO_REUSEADDR on");
    assert!(
        !reuse(Some(false)).await,
        "Some(false): the OS's default, off"
    );
    let listener = tcp_listener(&selector).await;
    let client = within(
        a_socket(&selector)
            .tcp()
            .configure(|o| o.reuse_address = None)
            .connect(listener.local_address()),
    )
    .await
    .unwrap();
    assert!(!client.with_sock_ref(|s| s.reuse_address()).unwrap());
}

/// `keep_alive: None` with a keep-alive parameter set is `SO_KEEPALIVE` on (with that
/// parameter); `Some(false)` with it is off; `None` alone leaves the OS's default, off.
#[tokio::test]
async fn keep_alive_left_none_is_on_when_a_parameter_is_set() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    for (keep_alive, idle, expected) in [
        (None, Some(Duration::from_secs(7)), true),
        (Some(false), Some(Duration::from_secs(7)), false),
        (None, None, false),
    ] {
        let client = within(
            a_socket(&selector)
                .tcp()
                .configure(|o| {
                    o.keep_alive = keep_alive;
                    o.keep_alive_idle = idle;
                })
                .connect(listener.local_address()),
        )
        .await
        .unwrap();
        let (on, time) = client
            .with_sock_ref(|s| Ok((s.keepalive()?, s.tcp_keepalive_time()?)))
            .unwrap();
        assert_eq!(on, expected, "keep_alive {keep_alive:?}, idle {idle:?}");
        if expected {
            assert_eq!(time, Duration::from_secs(7));
        }
        within(listener.accept()).await.unwrap();
    }
}
