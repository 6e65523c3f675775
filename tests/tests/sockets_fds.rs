//! Descriptor accounting, in a test binary of its own with a single test, so that no other test
//! opens or closes descriptors while `/proc/self/fd` is counted.

use std::sync::Arc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::SelectorManager;
use net_tests::loopback::{connect, connected_pair, echo_server, tcp_listener, udp_socket};
use net_tests::probe::fd_count;
use net_tests::within;

/// Waits (polling, bounded by the hang limit) until the descriptor count is back to `expected`.
async fn settle_to(expected: usize) {
    within(async {
        while fd_count() != expected {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

#[test]
fn descriptors_are_released() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        selector_close_releases_every_descriptor().await;
        ten_thousand_connect_close_cycles_leak_nothing().await;
    });
}

async fn selector_close_releases_every_descriptor() {
    let before = fd_count();
    let selector = SelectorManager::new();
    let listener = Arc::new(tcp_listener(&selector).await);
    let udp = udp_socket(&selector).await;
    let mut readers = Vec::new();
    let mut sockets = Vec::new();
    for _ in 0..20 {
        let (mut client, mut server_side) = connected_pair(&selector, &listener).await;
        // Channels held by other tasks, with reads pending.
        for socket in [&mut client, &mut server_side] {
            let mut input = socket.open_read_channel().unwrap();
            let output = socket.open_write_channel(true).unwrap();
            readers.push(tokio::spawn(async move {
                let result = input.read_line(64, LineEnding::Default).await;
                (result, input, output)
            }));
        }
        sockets.push(client);
        sockets.push(server_side);
    }
    let accepting = Arc::clone(&listener);
    let accept = tokio::spawn(async move { accepting.accept().await });
    assert!(fd_count() >= before + 42, "sockets were not counted");

    selector.close();
    // Descriptors are released by close itself, while the sockets, channels and listener are
    // all still alive.
    assert_eq!(fd_count(), before, "selector close left descriptors open");
    for reader in readers {
        let (result, _input, _output) = within(reader).await.unwrap();
        assert!(matches!(
            net_sockets::Error::from(result.unwrap_err()),
            net_sockets::Error::SelectorClosed
        ));
    }
    assert!(matches!(
        within(accept).await.unwrap(),
        Err(net_sockets::Error::SelectorClosed)
    ));
    drop((sockets, udp, listener));
    assert_eq!(fd_count(), before);
}

async fn ten_thousand_connect_close_cycles_leak_nothing() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let address = server.local_address();
    let before = fd_count();
    let started = std::time::Instant::now();
    for _ in 0..10_000 {
        connect(&selector, address.clone()).await.close();
    }
    // The server side closes each connection when it sees the client's FIN.
    settle_to(before).await;
    eprintln!("10,000 connect/close cycles took {:?}", started.elapsed());
    server.close();
}
