//! Claims of the UDP and the options-and-accepting rows of `guarantees.md` that none of the
//! tests the rows named asserted.

use std::io;
use std::net::{Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::time::Duration;

use futures_core::Stream;
use net_io::LineEnding;
use net_sockets::{
    Datagram, Error, MAX_DATAGRAM_SIZE_V6, SelectorManager, SocketAddress, ToSocketAddress,
    UnixSocketAddress, a_socket,
};
use net_tests::loopback::{connected_pair, next_item, tcp_listener, udp_socket};
use net_tests::{payload, pending_after_one_poll, within};

/// The message of the error a connect from `local` to `target` fails with, of kind `kind`.
async fn connect_fails(
    selector: &SelectorManager,
    local: impl Into<SocketAddress>,
    target: impl ToSocketAddress,
    kind: io::ErrorKind,
) -> String {
    let e = within(
        a_socket(selector)
            .tcp()
            .local_address(local)
            .connect(target),
    )
    .await
    .map(|_| ())
    .unwrap_err();
    assert_eq!(e.kind(), kind, "{e:?}");
    e.to_string()
}

/// Row "A datagram over 65,507 bytes (IPv4, ...) or 65,527 bytes (IPv6)": `send` of a
/// hand-built IPv6 datagram one byte over the limit fails with `Error::DatagramTooLarge`, kind
/// `InvalidInput`; nothing is sent, and a datagram of the largest size goes through next.
/// (The named tests sent a hand-built one over the IPv4 limit only, and did not check that
/// nothing arrived.)
#[tokio::test]
async fn a_hand_built_ipv6_datagram_over_the_limit_is_refused_and_nothing_is_sent() {
    if !net_tests::loopback::has_ipv6_loopback() {
        eprintln!("no IPv6 loopback: skipping");
        return;
    }
    let selector = SelectorManager::new();
    let receiver = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let sender = a_socket(&selector).udp().bind(("::1", 0)).await.unwrap();
    let to = receiver.local_address();
    let hand_built = Datagram {
        packet: vec![0; MAX_DATAGRAM_SIZE_V6 + 1].into(),
        address: to.clone(),
    };
    let e = within(sender.send(hand_built)).await.unwrap_err();
    assert!(
        matches!(e, Error::DatagramTooLarge { size } if size == MAX_DATAGRAM_SIZE_V6 + 1),
        "{e:?}"
    );
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    let largest = payload(MAX_DATAGRAM_SIZE_V6);
    within(sender.send(Datagram::new(largest.clone(), to).unwrap()))
        .await
        .unwrap();
    // The first datagram the receiver gets is the largest one: the refused one never went.
    assert_eq!(within(receiver.receive()).await.unwrap().packet, largest);
    let mut next = pin!(receiver.receive());
    assert!(pending_after_one_poll(next.as_mut()).await);
}

/// Row "`send` on a socket bound to an IPv4 address ... to an IPv6 address": the
/// `InvalidInput` error names both addresses. (The named tests checked the kind only.)
#[tokio::test]
async fn an_ipv4_sockets_send_to_an_ipv6_address_names_both_addresses() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let local = socket.local_address().to_string();
    let to = SocketAddr::new(Ipv6Addr::LOCALHOST.into(), 9);
    let e = within(socket.send(Datagram::new("x", to).unwrap()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e:?}");
    let message = e.to_string();
    assert!(message.contains(&local), "{message} (local {local})");
    assert!(message.contains(&to.to_string()), "{message} (to {to})");
}

/// Row "A UDP `connect` or `connect_from` to port 0": `InvalidInput` naming port 0, and
/// nothing is bound: the local port `connect_from` was given can be bound straight after.
/// (The named test checked no message for `connect_from`, and nothing of what stays bound.)
#[tokio::test]
async fn a_udp_connect_from_a_fixed_port_to_port_zero_names_it_and_binds_nothing() {
    let selector = SelectorManager::new();
    let (local, _port) = net_tests::loopback::unbound_udp_address();
    let local = local.to_string();
    let e = a_socket(&selector)
        .udp()
        .connect_from("127.0.0.1:0", local.as_str())
        .await
        .expect_err("a UDP socket connected to port 0");
    assert!(
        matches!(&e, Error::Io(io) if io.kind() == io::ErrorKind::InvalidInput),
        "{e:?}"
    );
    assert!(e.to_string().contains("port 0"), "{e}");
    let bound = a_socket(&selector).udp().bind(local.as_str()).await;
    assert!(bound.is_ok(), "{:?}", bound.err());
}

/// Row "An option value the OS refuses (`keep_alive_interval(0)`)": `bind` fails with
/// `Error::InvalidOption` of kind `InvalidInput` too, and `connect`'s names the option. (The
/// named test checked the kind of `connect`'s only, and the option of `bind`'s only.)
#[tokio::test]
async fn an_option_the_os_refuses_is_invalid_input_naming_it_from_bind_and_connect() {
    let selector = SelectorManager::new();
    let e = within(
        a_socket(&selector)
            .tcp()
            .keep_alive_interval(Duration::ZERO)
            .bind(("127.0.0.1", 0)),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e:?}");
    let listener = tcp_listener(&selector).await;
    let e = within(
        a_socket(&selector)
            .tcp()
            .keep_alive_interval(Duration::ZERO)
            .connect(("127.0.0.1", listener.port().unwrap())),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption { option, .. } if *option == "keep_alive_interval"),
        "{e:?}"
    );
}

/// Row "A Unix socket path longer than this crate puts in a socket address": the message
/// names the path, its length and the limit. (The named tests checked the numbers only.)
#[tokio::test]
async fn a_unix_path_too_long_is_refused_naming_the_path() {
    let selector = SelectorManager::new();
    let path = std::env::temp_dir().join(format!(
        "nsl-named-{}-{}",
        std::process::id(),
        "z".repeat(150)
    ));
    for connect in [false, true] {
        let builder = a_socket(&selector).tcp();
        let e = if connect {
            within(builder.connect(UnixSocketAddress::new(&path)))
                .await
                .unwrap_err()
        } else {
            within(builder.bind(UnixSocketAddress::new(&path)))
                .await
                .unwrap_err()
        };
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{e:?}");
        let message = e.to_string();
        let length = path.as_os_str().len().to_string();
        assert!(
            message.contains(&*path.to_string_lossy())
                && message.contains(&length)
                && message.contains("107"),
            "{message}"
        );
        assert!(!path.exists());
    }
}

/// Row "`accept(2)` fails with an error of the listener itself, one it does not say to
/// retry": a connection accepted before is not affected (it is served after the failed
/// accepts), and the listener stays open until closed. (The named tests had no connection
/// accepted before, and did not look at the listener after.)
#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn an_accept_error_not_retried_spares_the_connections_accepted_before() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let mut client = client.connection().unwrap();
    let mut server = server.connection().unwrap();
    listener
        .with_sock_ref(|sock| sock.shutdown(std::net::Shutdown::Read))
        .unwrap();
    for _ in 0..2 {
        match within(listener.accept()).await {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e:?}"),
            other => panic!("accept: {other:?}"),
        }
    }
    assert!(!listener.is_closed());
    client.output.write_string_utf8("ping\n").await.unwrap();
    client.output.flush().await.unwrap();
    let line = within(server.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("ping"));
    server.output.write_string_utf8("pong\n").await.unwrap();
    server.output.flush().await.unwrap();
    let line = within(client.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("pong"));
    listener.close();
    assert!(listener.is_closed());
}

/// Row "`close()` (or the selector's close) while ... a `receive` waits ..., or in an
/// `incoming()` stream kept without being polled": the port can be bound again straight after
/// the close returns, and the stream ends, for the selector's close too. (The named test
/// waited in `await_closed` before binding again, and closed the socket itself only.)
#[tokio::test]
async fn an_incoming_stream_kept_unpolled_frees_the_port_as_either_close_returns() {
    for by_selector in [false, true] {
        let selector = SelectorManager::new();
        let other = SelectorManager::new();
        let socket = udp_socket(&selector).await;
        let address = socket.local_address();
        let mut incoming = socket.incoming();
        let waited = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::pin::Pin::new(&mut incoming).poll_next(cx).is_pending())
        })
        .await;
        assert!(waited);
        if by_selector {
            selector.close();
        } else {
            socket.close();
        }
        let again = a_socket(&other).udp().bind(address).await;
        assert!(again.is_ok(), "by the selector: {by_selector}: {again:?}");
        assert!(next_item(&mut incoming).await.is_none(), "{by_selector}");
    }
}

/// Row "`send_buffer_size(n)` / `receive_buffer_size(n)` with `n` over what a C int holds":
/// clamped on a TCP listener and a TCP client too, never wrapped. (The named test made UDP
/// sockets only.)
#[tokio::test]
async fn tcp_buffer_sizes_beyond_a_c_int_are_the_largest_not_wrapped() {
    let selector = SelectorManager::new();
    let sizes = |requested: usize| {
        let selector = selector.clone();
        async move {
            let builder = || {
                a_socket(&selector)
                    .tcp()
                    .send_buffer_size(requested)
                    .receive_buffer_size(requested)
            };
            let listener = within(builder().bind(("127.0.0.1", 0))).await.unwrap();
            let client = within(builder().connect(listener.local_address()))
                .await
                .unwrap();
            let of_listener = listener
                .with_sock_ref(|s| Ok((s.send_buffer_size()?, s.recv_buffer_size()?)))
                .unwrap();
            let of_client = client
                .with_sock_ref(|s| Ok((s.send_buffer_size()?, s.recv_buffer_size()?)))
                .unwrap();
            (of_listener, of_client)
        }
    };
    let largest = sizes(i32::MAX as usize).await;
    for requested in [1 << 32, (1 << 32) + 4096, usize::MAX] {
        assert_eq!(sizes(requested).await, largest, "requested {requested}");
    }
}

/// Row "`close()` while another task on another thread waits in `await_closed()`": once it
/// returns there, the Unix listener's file is gone and its path can be bound again. (The named
/// test polled `await_closed` by hand on the closing thread, and bound nothing after.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn await_closed_on_another_thread_returns_with_the_unix_path_free_to_bind() {
    let selector = SelectorManager::new();
    let path = std::env::temp_dir().join(format!(
        "net-sockets-{}-rows-await-closed.sock",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let listener = std::sync::Arc::new(
        within(
            a_socket(&selector)
                .tcp()
                .bind(UnixSocketAddress::new(&path)),
        )
        .await
        .unwrap(),
    );
    let (waiting, waits) = tokio::sync::oneshot::channel();
    let waiter = tokio::spawn({
        let listener = std::sync::Arc::clone(&listener);
        let selector = selector.clone();
        let path = path.clone();
        async move {
            let mut closed = pin!(listener.await_closed());
            assert!(pending_after_one_poll(closed.as_mut()).await);
            let _ = waiting.send(std::thread::current().id());
            closed.await;
            let gone = !path.exists();
            let again = a_socket(&selector)
                .tcp()
                .bind(UnixSocketAddress::new(&path))
                .await;
            (gone, again)
        }
    });
    let waiter_thread = within(waits).await.unwrap();
    // Closed from a thread that is not a runtime worker, so that it is another thread.
    let closer = std::thread::spawn({
        let listener = std::sync::Arc::clone(&listener);
        move || {
            assert_ne!(std::thread::current().id(), waiter_thread);
            listener.close();
        }
    });
    let (gone, again) = within(waiter).await.unwrap();
    closer.join().unwrap();
    assert!(
        gone,
        "await_closed returned with the socket file still there"
    );
    let again = again.unwrap();
    again.close();
    assert!(!path.exists());
}

/// Row "A `connect` whose `local_address` cannot be bound": the message names the target as
/// well as the local address. (The named test checked the local address only.)
#[tokio::test]
async fn a_local_address_that_cannot_be_bound_names_the_target_too() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let target = server.local_address();
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap();
    let message = connect_fails(&selector, taken, target.clone(), io::ErrorKind::AddrInUse).await;
    assert!(
        message.contains(&taken.to_string()) && message.contains(&target.to_string()),
        "{message}"
    );
}

/// Row "A `connect` whose `local_address` is of the other kind than its target":
/// `InvalidInput` naming both, a Unix path and an IP address either way round. (The named test
/// checked the kind only.)
#[tokio::test]
async fn a_local_address_of_the_other_kind_is_named_with_the_target() {
    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("rows-local-kind");
    let local = dir.path().join("client.sock");
    let listener = tcp_listener(&selector).await;
    let target = listener.local_address();
    let message = connect_fails(
        &selector,
        UnixSocketAddress::new(&local),
        target.clone(),
        io::ErrorKind::InvalidInput,
    )
    .await;
    assert!(
        message.contains(&*local.to_string_lossy()) && message.contains(&target.to_string()),
        "{message}"
    );
    assert!(!local.exists());

    let path = dir.path().join("server.sock");
    let unix = within(
        a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&path)),
    )
    .await
    .unwrap();
    let from: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let message = connect_fails(
        &selector,
        from,
        UnixSocketAddress::new(&path),
        io::ErrorKind::InvalidInput,
    )
    .await;
    assert!(
        message.contains("127.0.0.1") && message.contains(&*path.to_string_lossy()),
        "{message}"
    );
    drop(unix);
}

/// Row "`linger(Duration::ZERO)` (or `SO_LINGER` 0 set through `with_sock_ref`), and a
/// connection whose directions both end cleanly": with `SO_LINGER` 0 set through
/// `with_sock_ref`, the peer reads everything, then the end; and `close()` itself still
/// resets, under either. (The named test used the builder's `linger` only, and never closed.)
#[tokio::test]
async fn a_zero_linger_set_through_with_sock_ref_ends_cleanly_and_close_still_resets() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let selector = SelectorManager::new();
    let plain = tcp_listener(&selector).await;
    let by_builder =
        net_tests::loopback::tcp_listener_with(&selector, |b| b.linger(Duration::ZERO)).await;
    let answer = payload(64 * 1024);
    for (listener, set_by_hand) in [(&plain, true), (&by_builder, false)] {
        for close in [false, true] {
            let what = format!("set by hand: {set_by_hand}, close: {close}");
            let mut peer = within(tokio::net::TcpStream::connect(
                listener.local_address().to_string(),
            ))
            .await
            .unwrap();
            let accepted = within(listener.accept()).await.unwrap();
            if set_by_hand {
                accepted
                    .with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
                    .unwrap();
            }
            let mut connection = accepted.connection().unwrap();
            if close {
                connection.output.write_fully(b"lost?\n").await.unwrap();
                connection.output.flush().await.unwrap();
                connection.socket.close();
                let mut received = Vec::new();
                let read = within(peer.read_to_end(&mut received)).await;
                assert!(
                    matches!(&read, Err(e) if e.kind() == io::ErrorKind::ConnectionReset),
                    "{what}: {read:?}"
                );
                continue;
            }
            peer.shutdown().await.unwrap();
            let end = within(connection.input.read_line(64, LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "{what}: {end:?}");
            connection.output.write_fully(&answer).await.unwrap();
            within(connection.output.flush_and_close()).await.unwrap();
            within(connection.socket.await_closed()).await;
            let mut received = Vec::new();
            let read = within(peer.read_to_end(&mut received)).await;
            assert!(
                read.is_ok(),
                "{what}: {read:?} after {} bytes",
                received.len()
            );
            assert!(received == answer, "{what}");
        }
    }
}
