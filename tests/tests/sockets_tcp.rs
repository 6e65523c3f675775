//! TCP on loopback: echo with half-close, refused connects, resets, closing, flushing.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, SocketAddress, a_socket};
use net_tests::loopback::{
    connect, connected_pair, echo_server, never_accepting_listener, next_item, send_and_read_back,
    tcp_listener, tcp_listener_with, write_until_error,
};
use net_tests::{Ticker, payload, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_with_half_close_for_every_size() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let port = server.port().unwrap();
    for size in [0, 1, 4095, 4096, 4097, 40960, 8 * 1024 * 1024] {
        let mut socket = connect(&selector, ("127.0.0.1", port)).await;
        let data = payload(size);
        let echoed = send_and_read_back(&mut socket, &data).await;
        assert_eq!(echoed.len(), size, "size {size}");
        assert!(echoed[..] == data[..], "payload of {size} bytes differs");
        // Both directions are done: the socket closed itself.
        within(socket.await_closed()).await;
        assert!(socket.is_closed());
    }
    server.close();
}

#[tokio::test]
async fn reading_after_local_close_fails() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let mut socket = connect(&selector, server.local_address()).await;
    let mut input = socket.open_read_channel().unwrap();
    socket.close();
    let err = within(input.read_u8()).await.unwrap_err();
    assert!(matches!(Error::from(err), Error::Closed));
    within(socket.await_closed()).await;
}

#[tokio::test]
async fn connecting_to_a_closed_port_is_refused() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let port = server.port().unwrap();
    server.close();
    let err = within(a_socket(&selector).tcp().connect(("127.0.0.1", port)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
    assert!(matches!(err, Error::Io(ref e) if e.kind() == io::ErrorKind::ConnectionRefused));
    // By name too (every resolved address refuses).
    let err = within(a_socket(&selector).tcp().connect(("localhost", port)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err:?}");
}

#[tokio::test]
async fn peer_disconnect_ends_a_pending_typed_read_and_everything_closes() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server_side) = connected_pair(&selector, &listener).await;
    let mut input = server_side.open_read_channel().unwrap();
    let pending = tokio::spawn(async move { input.read_u32().await });
    let mut output = client.open_write_channel(true).unwrap();
    output.write_u16(7).await.unwrap();
    client.close();
    let err = within(pending).await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            net_io::Error::UnexpectedEof {
                needed: 4,
                available: 2
            }
        ),
        "{err:?}"
    );
    server_side.close();
    listener.close();
    assert!(client.is_closed() && server_side.is_closed() && listener.is_closed());
    within(client.await_closed()).await;
    within(server_side.await_closed()).await;
    within(listener.await_closed()).await;
}

#[tokio::test]
async fn pending_accept_fails_when_the_listener_closes() {
    let selector = SelectorManager::new();
    let listener = Arc::new(tcp_listener(&selector).await);
    let accepting = Arc::clone(&listener);
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let pending = tokio::spawn(async move {
        let accept = accepting.accept();
        started_tx.send(()).unwrap();
        accept.await
    });
    started_rx.await.unwrap();
    tokio::task::yield_now().await;
    listener.close();
    let result = within(pending).await.unwrap();
    assert!(matches!(result, Err(Error::Closed)), "{result:?}");
    assert!(listener.is_closed());
}

#[tokio::test]
async fn accept_on_an_immediately_closed_listener_fails() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    listener.close();
    assert!(matches!(
        within(listener.accept()).await,
        Err(Error::Closed)
    ));
    // The stream of connections simply ends.
    let mut incoming = listener.incoming();
    assert!(next_item(&mut incoming).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_write_close_await_closed_256_times() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    for _ in 0..256 {
        let mut socket = connect(&selector, server.local_address()).await;
        let mut output = socket.open_write_channel(true).unwrap();
        output.write_string_utf8("x\n").await.unwrap();
        socket.close();
        within(socket.await_closed()).await;
    }
}

#[tokio::test]
async fn auto_flush_delivers_without_flush_and_buffered_writes_after_flush() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server_side) = connected_pair(&selector, &listener).await;
    let mut input = server_side.open_read_channel().unwrap();

    let mut auto = client.open_write_channel(true).unwrap();
    auto.write_string_utf8("one\n").await.unwrap();
    let line = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("one"));
    drop(auto);

    let (mut client2, mut server2) = connected_pair(&selector, &listener).await;
    let mut input2 = server2.open_read_channel().unwrap();
    let mut buffered = client2.open_write_channel(false).unwrap();
    buffered.write_string_utf8("two\n").await.unwrap();
    // Not flushed: nothing may arrive (a negative check needs a bound; 200 ms is generous on
    // loopback, where the flushed case below takes microseconds).
    let early = tokio::time::timeout(Duration::from_millis(200), input2.await_content(1)).await;
    assert!(early.is_err(), "unflushed data arrived");
    buffered.flush().await.unwrap();
    let line = within(input2.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("two"));
    client.close();
    client2.close();
}

#[tokio::test]
async fn channels_open_once() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let mut socket = connect(&selector, server.local_address()).await;
    let _input = socket.open_read_channel().unwrap();
    let _output = socket.open_write_channel(true).unwrap();
    assert!(matches!(
        socket.open_read_channel(),
        Err(Error::ChannelAlreadyOpen)
    ));
    assert!(matches!(
        socket.open_write_channel(false),
        Err(Error::ChannelAlreadyOpen)
    ));
    assert!(matches!(
        socket.connection(),
        Err(Error::ChannelAlreadyOpen)
    ));
}

#[tokio::test]
async fn connection_bundles_both_channels_without_auto_flush() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let socket = connect(&selector, server.local_address()).await;
    let mut connection = socket.connection().unwrap();
    assert!(!connection.output.auto_flush());
    connection.output.write_string_utf8("ping\n").await.unwrap();
    connection.output.flush().await.unwrap();
    let line = within(connection.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("ping"));
    connection.socket.close();
}

#[tokio::test]
async fn every_address_form_connects() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let port = server.port().unwrap();
    let text = format!("127.0.0.1:{port}");
    let std_address: std::net::SocketAddr = text.parse().unwrap();
    let expected = SocketAddress::from(std_address);
    connects(&selector, ("127.0.0.1", port), &expected).await;
    connects(&selector, ("localhost", port), &expected).await;
    connects(&selector, ("localhost".to_owned(), port), &expected).await;
    connects(&selector, text.as_str(), &expected).await;
    connects(&selector, &text, &expected).await;
    connects(&selector, format!("localhost:{port}"), &expected).await;
    connects(&selector, std_address, &expected).await;
    connects(&selector, (std_address.ip(), port), &expected).await;
    connects(&selector, &expected, &expected).await;
    connects(&selector, &&expected, &expected).await;
    connects(&selector, expected.clone(), &expected).await;
}

/// Connects to `address` and checks that the socket's peer is `expected`.
async fn connects(
    selector: &SelectorManager,
    address: impl net_sockets::ToSocketAddress + std::fmt::Debug,
    expected: &SocketAddress,
) {
    let shown = format!("{address:?}");
    let socket = within(a_socket(selector).tcp().connect(address))
        .await
        .unwrap();
    assert_eq!(&socket.remote_address(), expected, "{shown}");
    assert_eq!(
        socket.local_address().port().map(|p| p != 0),
        Some(true),
        "{shown}"
    );
    socket.close();
}

#[tokio::test]
async fn an_unknown_host_is_a_resolve_error() {
    let selector = SelectorManager::new();
    let err = within(
        a_socket(&selector)
            .tcp()
            .connect(("no-such-host.invalid", 80)),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, Error::Resolve { ref host, .. } if host == "no-such-host.invalid"),
        "{err:?}"
    );
    // The resolver's own error is kept as the source.
    let source = std::error::Error::source(&err).expect("the resolver's error");
    assert!(source.is::<std::io::Error>(), "{source:?}");
}

#[tokio::test]
async fn peer_reset_is_connection_reset() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    // linger 0: close sends RST instead of FIN.
    let client = a_socket(&selector)
        .tcp()
        .linger(Duration::ZERO)
        .connect(listener.local_address())
        .await
        .unwrap();
    let mut server_side = listener.accept().await.unwrap();
    let mut input = server_side.open_read_channel().unwrap();
    client.close();
    let err = within(input.read_u8()).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionReset, "{err:?}");
    assert_eq!(Error::from(err).kind(), io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn writing_to_a_peer_that_left_is_an_error_not_a_signal() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, server_side) = connected_pair(&selector, &listener).await;
    server_side.close();
    let mut output = client.open_write_channel(true).unwrap();
    let err = write_until_error(&mut output, &[7u8; 64 * 1024]).await;
    assert!(
        matches!(
            err.kind(),
            io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn peer_half_close_while_we_still_write() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server_side) = connected_pair(&selector, &listener).await;
    let mut client_out = client.open_write_channel(true).unwrap();
    let mut client_in = client.open_read_channel().unwrap();
    client_out.flush_and_close().await.unwrap();
    let mut server_in = server_side.open_read_channel().unwrap();
    let mut server_out = server_side.open_write_channel(true).unwrap();
    assert_eq!(
        within(server_in.read_line(10, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    for i in 0..100 {
        server_out
            .write_string_utf8(&format!("line {i}\n"))
            .await
            .unwrap();
    }
    server_out.flush_and_close().await.unwrap();
    for i in 0..100 {
        let line = within(client_in.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line, Some(format!("line {i}")));
    }
    assert_eq!(
        within(client_in.read_line(64, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    within(server_side.await_closed()).await;
    within(client.await_closed()).await;
}

#[tokio::test]
async fn socket_timeout_ends_an_idle_read_with_timeout() {
    let selector = SelectorManager::new();
    let listener =
        tcp_listener_with(&selector, |b| b.socket_timeout(Duration::from_millis(100))).await;
    let (client, mut server_side) = connected_pair(&selector, &listener).await;
    let mut input = server_side.open_read_channel().unwrap();
    let err = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap_err();
    assert!(matches!(err, net_io::Error::Timeout), "{err:?}");
    assert!(matches!(Error::from(err), Error::Timeout));
    client.close();
}

/// A read whose first wait comes when its task's cooperative budget is spent (a busy task:
/// the socket's and the timer's polls are both refused then, and register nothing) still times
/// out once the task runs again.
#[tokio::test]
async fn socket_timeout_ends_a_read_first_polled_without_budget() {
    use tokio::io::{AsyncRead, ReadBuf};
    let selector = SelectorManager::new();
    let listener =
        tcp_listener_with(&selector, |b| b.socket_timeout(Duration::from_millis(100))).await;
    let (client, server_side) = connected_pair(&selector, &listener).await;
    let mut stream = server_side.into_stream().unwrap();
    let mut first = true;
    let mut bytes = [0u8; 16];
    let read = std::future::poll_fn(|cx| {
        if first {
            first = false;
            while let std::task::Poll::Ready(spent) = tokio::task::coop::poll_proceed(cx) {
                spent.made_progress();
            }
        }
        std::pin::Pin::new(&mut stream).poll_read(cx, &mut ReadBuf::new(&mut bytes))
    });
    let err = within(read).await.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err:?}");
    client.close();
}

/// A read given up while waiting (a `select!` loop that makes a new read each turn) leaves the
/// timer running for the next read: silence for the timeout ends the loop's read, though no one
/// read waited that long. A loop of fresh timers would never time out.
///
/// Each read waits for one poll only: `select!` polls it first and then takes a branch that is
/// ready at once, and the loop sleeps before its next read. So no read waits the timeout by
/// itself, whenever the loaded machine runs the task, and the first read is always given up.
/// (With a branch that took a 20 ms sleep, a task run 200 ms late found the first read's
/// timeout and the sleep both due, and `select!` could take the read: "timed out without being
/// given up: 0 turns".)
#[tokio::test]
async fn socket_timeout_counts_silence_across_reads_given_up_by_select() {
    let selector = SelectorManager::new();
    let listener =
        tcp_listener_with(&selector, |b| b.socket_timeout(Duration::from_millis(200))).await;
    let (client, mut server_side) = connected_pair(&selector, &listener).await;
    let mut input = server_side.open_read_channel().unwrap();
    let turns = within(async {
        let mut turns = 0u32;
        loop {
            tokio::select! {
                biased;
                read = input.read_line(64, LineEnding::Default) => {
                    let err = read.unwrap_err();
                    assert!(matches!(err, net_io::Error::Timeout), "{err:?}");
                    return turns;
                }
                () = std::future::ready(()) => turns += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        turns >= 1,
        "the read timed out without being given up: {turns} turns"
    );
    client.close();
}

#[tokio::test]
async fn socket_timeout_is_about_inactivity_not_total_time() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let mut client = a_socket(&selector)
        .tcp()
        .socket_timeout(Duration::from_millis(600))
        .connect(listener.local_address())
        .await
        .unwrap();
    let mut server_side = listener.accept().await.unwrap();
    let mut output = server_side.open_write_channel(true).unwrap();
    let mut input = client.open_read_channel().unwrap();
    let writer = tokio::spawn(async move {
        for i in 0..10 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            output.write_string_utf8(&format!("{i}\n")).await?;
        }
        output.flush_and_close().await
    });
    // 1 s in total, but never 600 ms without data (a 6× margin for a loaded machine).
    for i in 0..10 {
        let line = within(input.read_line(8, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(line, Some(i.to_string()));
    }
    within(writer).await.unwrap().unwrap();
}

#[tokio::test]
async fn connect_timeout_bounds_a_connect_that_cannot_finish() {
    let selector = SelectorManager::new();
    // A listener that never accepts, with a full backlog: further SYNs are dropped, so connects
    // stay pending.
    let listener = never_accepting_listener(&selector).await;
    let mut fillers = Vec::new();
    let outcome = within(async {
        for _ in 0..64 {
            let attempt = a_socket(&selector)
                .tcp()
                .connect_timeout(Duration::from_millis(300))
                .connect(listener.local_address())
                .await;
            match attempt {
                Ok(socket) => fillers.push(socket),
                Err(e) => return e,
            }
        }
        panic!("64 connects to a full backlog all succeeded");
    })
    .await;
    assert!(matches!(outcome, Error::Timeout), "{outcome:?}");
}

#[tokio::test]
async fn incoming_yields_connections() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let address = listener.local_address();
    let mut incoming = listener.incoming();
    for _ in 0..3 {
        let client = connect(&selector, address.clone()).await;
        let accepted = next_item(&mut incoming).await.unwrap().unwrap();
        assert_eq!(accepted.remote_address(), client.local_address());
    }
}

/// `incoming()` holds the listener: dropping the `ServerSocket` leaves the stream yielding
/// connections, and the listener closes (connects refused) once the stream is dropped too.
#[tokio::test]
async fn incoming_keeps_the_listener_open_after_the_server_socket_is_dropped() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let address = listener.local_address();
    let mut incoming = listener.incoming();
    drop(listener);
    let client = connect(&selector, address.clone()).await;
    let accepted = next_item(&mut incoming).await.unwrap().unwrap();
    assert_eq!(accepted.remote_address(), client.local_address());
    drop(incoming);
    let refused = a_socket(&selector)
        .tcp()
        .connect(address)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, Error::Io(e) if e.kind() == io::ErrorKind::ConnectionRefused),
        "{refused:?}"
    );
}

/// A listener whose `accept(2)` fails with an error it does not retry: a listening socket shut
/// down for reading makes Linux's `accept(2)` fail with `EINVAL`.
#[cfg(any(target_os = "linux", target_os = "android"))]
async fn a_listener_whose_accept_fails_for_good(
    selector: &SelectorManager,
) -> net_sockets::ServerSocket {
    let listener = tcp_listener(selector).await;
    listener
        .with_sock_ref(|sock| sock.shutdown(std::net::Shutdown::Read))
        .unwrap();
    listener
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn accept_reports_an_error_it_does_not_retry() {
    let selector = SelectorManager::new();
    let listener = a_listener_whose_accept_fails_for_good(&selector).await;
    for _ in 0..2 {
        let accepted = within(listener.accept()).await;
        match accepted {
            Err(Error::Io(e)) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e:?}"),
            other => panic!("accept: {other:?}"),
        }
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[tokio::test]
async fn incoming_yields_an_error_it_does_not_retry_once_then_ends() {
    let selector = SelectorManager::new();
    let listener = a_listener_whose_accept_fails_for_good(&selector).await;
    let mut incoming = listener.incoming();
    match next_item(&mut incoming).await {
        Some(Err(Error::Io(e))) => assert_eq!(e.raw_os_error(), Some(libc::EINVAL), "{e:?}"),
        other => panic!("first item: {other:?}"),
    }
    let next = next_item(&mut incoming).await;
    assert!(next.is_none(), "incoming went on after its error: {next:?}");
    assert!(next_item(&mut incoming).await.is_none());
}

#[tokio::test]
async fn close_is_idempotent_and_callable_from_other_tasks() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let mut socket = connect(&selector, server.local_address()).await;
    let mut input = socket.open_read_channel().unwrap();
    let socket = Arc::new(socket);
    let reader = tokio::spawn(async move { input.read_u8().await });
    let waiters: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&socket);
            tokio::spawn(async move { s.await_closed().await })
        })
        .collect();
    let closers: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&socket);
            tokio::spawn(async move { s.close() })
        })
        .collect();
    for c in closers {
        within(c).await.unwrap();
    }
    for w in waiters {
        within(w).await.unwrap();
    }
    let err = within(reader).await.unwrap().unwrap_err();
    assert!(matches!(Error::from(err), Error::Closed));
    socket.close();
    assert!(socket.is_closed());
}

#[tokio::test]
async fn socket_timeout_ends_a_write_the_peer_never_reads() {
    let selector = SelectorManager::new();
    let listener = a_socket(&selector)
        .tcp()
        .receive_buffer_size(16 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let mut client = a_socket(&selector)
        .tcp()
        .send_buffer_size(16 * 1024)
        .socket_timeout(Duration::from_millis(200))
        .connect(listener.local_address())
        .await
        .unwrap();
    let _server_side = listener.accept().await.unwrap(); // never reads
    let mut output = client.open_write_channel(false).unwrap();
    let err = write_until_error(&mut output, &[1u8; 64 * 1024]).await;
    assert!(matches!(err, net_io::Error::Timeout), "{err:?}");
}

#[tokio::test]
async fn a_dropped_read_future_loses_no_bytes() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server_side) = connected_pair(&selector, &listener).await;
    let mut input = server_side.open_read_channel().unwrap();
    let mut output = client.open_write_channel(true).unwrap();
    output.write_string_utf8("half a li").await.unwrap();
    // The line is incomplete: the read waits; drop it once the bytes are buffered.
    within(input.await_content(9)).await.unwrap();
    let dropped = tokio::time::timeout(
        Duration::from_millis(20),
        input.read_line(64, LineEnding::Default),
    )
    .await;
    assert!(dropped.is_err());
    output.write_string_utf8("ne\n").await.unwrap();
    let line = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("half a line"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_connections_are_unaffected_by_a_misbehaving_one() {
    let selector = SelectorManager::new();
    let server = echo_server(&selector).await;
    let bad = a_socket(&selector)
        .tcp()
        .linger(Duration::ZERO)
        .connect(server.local_address())
        .await
        .unwrap();
    let mut good = connect(&selector, server.local_address()).await;
    bad.close(); // reset
    let mut input = good.open_read_channel().unwrap();
    let mut output = good.open_write_channel(true).unwrap();
    output.write_string_utf8("still here\n").await.unwrap();
    let line = within(input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("still here"));
}

/// A task whose writes never have to wait (the socket always takes them) still lets the other
/// tasks of its thread run: each send takes a unit of tokio's cooperative budget, as tokio's
/// own writes do, so the task yields when the budget is spent.
#[tokio::test(flavor = "current_thread")]
async fn a_writer_that_never_waits_still_yields_to_other_tasks() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut socket, _peer) = connected_pair(&selector, &listener).await;
    let mut output = socket.open_write_channel(true).unwrap();
    // The first write may wait for the reactor to report the new socket writable.
    output.write_u8(0).await.unwrap();
    let ticker = Ticker::spawn();
    // 1,000 one-byte sends: far below what the socket buffers, so none of them waits.
    for _ in 0..1_000 {
        output.write_u8(1).await.unwrap();
    }
    assert!(
        ticker.ticks() > 0,
        "the writing task never yielded to the ticker"
    );
}
