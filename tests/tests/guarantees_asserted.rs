//! Claims of `crates/net-sockets/src/guarantees.md` (and SPEC §4.1) whose tests were loose
//! (they would pass if the claim were false) or missing, each asserted exactly here.

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::loopback::{connected_pair, tcp_listener, tcp_listener_with};
use net_tests::{payload, within};

/// (kind, OS code, variant) of a channel error, to compare reports.
fn shape(e: &net_io::Error) -> (ErrorKind, Option<i32>, String) {
    let os = match e {
        net_io::Error::Io(io) => io.raw_os_error(),
        _ => None,
    };
    let variant = format!("{e:?}");
    let variant = variant.split('(').next().unwrap_or_default().to_owned();
    let inner = e.inner_error().map(|i| format!("{i}"));
    (e.kind(), os, format!("{variant} / {inner:?}"))
}

/// Row "We write after the peer left": "every later write fails the same way" — the same
/// variant, kind and OS error code as the first failure (the test named in the row accepts
/// `BrokenPipe` or `ConnectionReset` for each write independently). A flush reports it too.
#[tokio::test]
async fn every_write_after_the_peer_reset_fails_exactly_as_the_first() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (peer, mut accepted) = raw_peer_of(&listener).await;
    let mut output = accepted.open_write_channel(true).unwrap();
    output.write_string_utf8("hello\n").await.unwrap();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer); // RST
    let chunk = payload(16 * 1024);
    let first = net_tests::loopback::write_until_error(&mut output, &chunk).await;
    let first_shape = shape(&first);
    assert!(
        matches!(
            first_shape.0,
            ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
        ),
        "{first:?}"
    );
    assert!(first_shape.1.is_some(), "an OS error code: {first:?}");
    for i in 0..3 {
        let again = within(output.write_fully(&chunk)).await.unwrap_err();
        assert_eq!(
            shape(&again),
            first_shape,
            "write {i} after the failure: {again:?}"
        );
        let small = within(output.write_fully(b"x")).await.unwrap_err();
        assert_eq!(shape(&small), first_shape, "small write {i}: {small:?}");
        let flushed = within(output.flush()).await.unwrap_err();
        assert_eq!(shape(&flushed), first_shape, "flush {i}: {flushed:?}");
    }
    assert!(output.is_closed_for_write());
}

/// Row "The socket is closed (by `close`, or by the selector) while lines are buffered": the
/// buffered whole lines first, then the close's variant on every later read. The named test
/// checks buffered lines only for a local close (the selector's close had nothing buffered),
/// and never with a partial line buffered after them, which must not come out as a line.
#[tokio::test]
async fn a_selector_close_with_lines_buffered_gives_the_whole_lines_then_selector_closed() {
    for local in [true, false] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (client, server) = connected_pair(&selector, &listener).await;
        let mut client = client.connection().unwrap();
        let mut server = server.connection().unwrap();
        client
            .output
            .write_string_utf8("a\nb\nc\nparti")
            .await
            .unwrap();
        client.output.flush().await.unwrap();
        let a = within(server.input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(a.as_deref(), Some("a"));
        // Everything sent is in the read buffer once the channel holds all of it.
        within(async {
            while server.input.available_for_read() < "b\nc\nparti".len() {
                assert!(
                    server
                        .input
                        .await_content(server.input.available_for_read() + 1)
                        .await
                        .unwrap()
                );
            }
        })
        .await;
        if local {
            server.socket.close();
        } else {
            selector.close();
        }
        for expected in ["b", "c"] {
            let line = within(server.input.read_line(64, LineEnding::Default))
                .await
                .unwrap_or_else(|e| panic!("local {local}: line {expected:?}: {e:?}"));
            assert_eq!(line.as_deref(), Some(expected), "local {local}");
        }
        for i in 0..2 {
            let e = within(server.input.read_line(64, LineEnding::Default)).await;
            let e = match e {
                Ok(line) => panic!("local {local}: read {i} after the whole lines: {line:?}"),
                Err(e) => Error::from(e),
            };
            if local {
                assert!(matches!(e, Error::Closed), "local close, read {i}: {e:?}");
            } else {
                assert!(
                    matches!(e, Error::SelectorClosed),
                    "selector close, read {i}: {e:?}"
                );
            }
        }
        selector.close();
    }
}

/// Row "An idle peer, with `socket_timeout(t)`": `net_io::Error::Timeout`, kind `TimedOut`,
/// `Error::Timeout` after conversion, "once nothing arrived for `t`" (not before). The named
/// test checks the variant only, not the kind, the conversion or the time; and the connection
/// stays usable afterwards (the `socket_timeout(ZERO)` row: "as after any timeout").
#[tokio::test]
async fn an_idle_read_times_out_after_t_with_the_documented_kinds_and_stays_usable() {
    const T: Duration = Duration::from_millis(300);
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| b.socket_timeout(T)).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let mut client = client.connection().unwrap();
    let mut server = server.connection().unwrap();
    let started = Instant::now();
    let e = within(server.input.read_line(64, LineEnding::Default))
        .await
        .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), ErrorKind::TimedOut);
    assert!(matches!(Error::from(io), Error::Timeout));
    assert!(waited >= T, "timed out after {waited:?}, before {T:?}");
    assert!(waited < T * 5, "timed out only after {waited:?}");
    client.output.write_string_utf8("later\n").await.unwrap();
    client.output.flush().await.unwrap();
    let line = within(server.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("later"));
}

/// Row "Garbage instead of a ClientHello": server `Handshake(InvalidMessage(_))`, "kind
/// `InvalidData`" (the named test checks the variant, not the kind). Row "A client that never
/// sends its ClientHello": `HandshakeTimeout(t)` with the configured `t`, kind `TimedOut`,
/// "after the configured handshake timeout" (the named test checks neither `t`, the kind nor
/// the time); "when the socket's `socket_timeout` is shorter,
/// `net_tls::Error::Socket(net_sockets::Error::Timeout)`, kind `TimedOut`, after it" (named
/// tests check it on the client side only).
#[tokio::test]
async fn server_handshake_failures_have_the_documented_kinds_and_times() {
    use net_tls::{Error as TlsError, TlsExt};
    const HANDSHAKE: Duration = Duration::from_millis(400);
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let config = pki
        .server_config()
        .handshake_timeout(HANDSHAKE)
        .build()
        .unwrap();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().unwrap();

    let _garbage = net_tests::tls::garbage_client(port).await;
    let accepted = within(listener.accept()).await.unwrap();
    let e = within(accepted.tls_server(&config)).await.unwrap_err();
    assert!(
        matches!(
            e,
            TlsError::Handshake(net_tls::rustls::Error::InvalidMessage(_))
        ),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::InvalidData, "{e:?}");

    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let accepted = within(listener.accept()).await.unwrap();
    let started = Instant::now();
    let e = within(accepted.tls_server(&config)).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(e, TlsError::HandshakeTimeout(t) if t == HANDSHAKE),
        "{e:?}"
    );
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
    assert!(waited >= HANDSHAKE, "{waited:?}");
    assert!(waited < HANDSHAKE * 5, "{waited:?}");

    // A shorter socket_timeout ends it first, with the socket's error.
    const SOCKET: Duration = Duration::from_millis(150);
    let short = tcp_listener_with(&selector, |b| b.socket_timeout(SOCKET)).await;
    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", short.port().unwrap()))
        .await
        .unwrap();
    let accepted = within(short.accept()).await.unwrap();
    let started = Instant::now();
    let e = within(accepted.tls_server(&config)).await.unwrap_err();
    let waited = started.elapsed();
    assert!(
        matches!(e, TlsError::Socket(Error::Timeout)),
        "{e:?} after {waited:?}"
    );
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
    assert!(waited >= SOCKET && waited < HANDSHAKE, "{waited:?}");
}

/// Row "`accept(2)` fails with an error of the listener itself": the error "again on every
/// later call (it never spins)", at once; "Those accepted earlier are not affected; the
/// listener stays open until closed or dropped" (the named tests check the error only).
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_listener_whose_accept_fails_for_good_stays_open_and_spares_earlier_connections() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    listener
        .with_sock_ref(|sock| sock.shutdown(std::net::Shutdown::Read))
        .unwrap();
    for i in 0..3 {
        let started = Instant::now();
        let e = within(listener.accept()).await.unwrap_err();
        assert!(
            matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::EINVAL)),
            "accept {i}: {e:?}"
        );
        assert!(
            // Not a speed test: an accept that waited would wait for ever (`within`'s bound).
            started.elapsed() < Duration::from_secs(5),
            "accept {i} waited"
        );
        assert!(!listener.is_closed(), "accept {i} closed the listener");
    }
    let mut client = client.connection().unwrap();
    let mut server = server.connection().unwrap();
    client
        .output
        .write_string_utf8("still here\n")
        .await
        .unwrap();
    client.output.flush().await.unwrap();
    let line = within(server.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("still here"));
    server.output.write_string_utf8("answered\n").await.unwrap();
    server.output.flush().await.unwrap();
    let line = within(client.input.read_line(64, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(line.as_deref(), Some("answered"));
    listener.close();
    assert!(listener.is_closed());
    assert!(matches!(
        within(listener.accept()).await,
        Err(Error::Closed)
    ));
}

/// Row "An option value the OS refuses": `bind` or `connect` fails with `Error::InvalidOption
/// { option, source }` (naming the option), kind `InvalidInput` — the named test checks the name
/// on `bind` and the kind on `connect` only; here both on both, and that `source` is the OS's.
#[tokio::test]
async fn a_refused_option_is_named_with_its_kind_and_os_source_on_bind_and_connect() {
    use std::error::Error as _;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let bind = a_socket(&selector)
        .tcp()
        .keep_alive_interval(Duration::ZERO)
        .bind(("127.0.0.1", 0))
        .await
        .map(|_| ())
        .unwrap_err();
    let connect = a_socket(&selector)
        .tcp()
        .keep_alive_interval(Duration::ZERO)
        .connect(("127.0.0.1", listener.port().unwrap()))
        .await
        .map(|_| ())
        .unwrap_err();
    for (what, e) in [("bind", bind), ("connect", connect)] {
        match &e {
            Error::InvalidOption { option, source, .. } => {
                assert_eq!(*option, "keep_alive_interval", "{what}");
                assert!(source.raw_os_error().is_some(), "{what}: {source:?}");
            }
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}");
        assert!(e.source().is_some(), "{what}");
        let io: std::io::Error = e.into();
        assert!(
            matches!(
                Error::from(io),
                Error::InvalidOption {
                    option: "keep_alive_interval",
                    ..
                }
            ),
            "{what}: round trip"
        );
    }
    // The listener was not bound with a dropped connection: nothing was accepted.
    let mut incoming = Box::pin(listener.accept());
    assert!(net_tests::pending_after_one_poll(incoming.as_mut()).await);
}

/// Row "A `connect` that `connect_timeout` ends": `Error::Timeout`, kind `TimedOut`, at the
/// timeout (the named test checks the variant only, not the kind or when).
#[tokio::test]
async fn a_connect_timeout_fires_at_its_time_with_kind_timed_out() {
    const T: Duration = Duration::from_millis(300);
    let selector = SelectorManager::new();
    let listener = net_tests::loopback::never_accepting_listener(&selector).await;
    let mut fillers = Vec::new();
    let (e, waited) = within(async {
        for _ in 0..64 {
            let started = Instant::now();
            let attempt = a_socket(&selector)
                .tcp()
                .connect_timeout(T)
                .connect(listener.local_address())
                .await;
            match attempt {
                Ok(socket) => fillers.push(socket),
                Err(e) => return (e, started.elapsed()),
            }
        }
        panic!("64 connects to a full backlog all succeeded");
    })
    .await;
    assert!(matches!(e, Error::Timeout), "{e:?}");
    assert_eq!(e.kind(), ErrorKind::TimedOut);
    assert!(waited >= T && waited < T * 4, "{waited:?}");
}

/// Row "A Unix listener's backlog is full": `connect` fails with `Error::Io` (OS error
/// `EAGAIN`), "at once" (the named test bounds it only by the 20 s hang limit).
#[tokio::test]
async fn a_connect_to_a_full_unix_backlog_fails_at_once() {
    let selector = SelectorManager::new();
    let dir = net_tests::TempDir::new("unix-backlog");
    let path = dir.join("full.sock");
    let _listener = a_socket(&selector)
        .tcp()
        .backlog(0)
        .bind(net_sockets::UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        let started = Instant::now();
        match within(
            a_socket(&selector)
                .tcp()
                .connect(net_sockets::UnixSocketAddress::new(&path)),
        )
        .await
        {
            Ok(socket) => held.push(socket),
            Err(e) => {
                assert!(
                    matches!(&e, Error::Io(io) if io.raw_os_error() == Some(libc::EAGAIN)),
                    "{e:?}"
                );
                assert_eq!(e.kind(), ErrorKind::WouldBlock);
                // Not a speed test: a connect that waited would wait for ever.
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{:?}",
                    started.elapsed()
                );
                return;
            }
        }
    }
    panic!("the backlog never filled");
}

/// (kind, OS code, variant) of a `Result`'s error; panics with `what` on success.
fn failed<T: std::fmt::Debug>(
    what: &str,
    r: net_io::Result<T>,
) -> (ErrorKind, Option<i32>, String) {
    match r {
        Ok(v) => panic!("{what}: after the failure it answered {v:?}"),
        Err(e) => shape(&e),
    }
}

/// Every kind of read of a channel whose transport failed (`first`): the same report each time.
async fn every_read_reports(
    input: &mut net_io::ByteReadChannel,
    first: &(ErrorKind, Option<i32>, String),
    case: &str,
) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt};
    let mut sink = {
        let (w, _r) = net_io::ByteChannel::new(false);
        w
    };
    let mut line = String::new();
    let mut buf = [0u8; 16];
    let mut big = vec![0u8; 100_000];
    let results = [
        (
            "read_line",
            failed(
                "read_line",
                within(input.read_line(64, LineEnding::Default)).await,
            ),
        ),
        (
            "read_line_strict",
            failed(
                "read_line_strict",
                within(input.read_line_strict(64, LineEnding::Default)).await,
            ),
        ),
        (
            "read_utf8_line",
            failed("read_utf8_line", within(input.read_utf8_line(64)).await),
        ),
        (
            "read_line_to",
            failed(
                "read_line_to",
                within(input.read_line_to(&mut line, 64, LineEnding::Default)).await,
            ),
        ),
        (
            "read_until",
            failed("read_until", within(input.read_until(b"\r\n", 64)).await),
        ),
        ("read_u8", failed("read_u8", within(input.read_u8()).await)),
        (
            "read_u64",
            failed("read_u64", within(input.read_u64()).await),
        ),
        (
            "read_fully",
            failed("read_fully", within(input.read_fully(&mut buf)).await),
        ),
        (
            "read_available",
            failed(
                "read_available",
                within(input.read_available(&mut buf)).await,
            ),
        ),
        (
            "read_available big",
            failed(
                "read_available big",
                within(input.read_available(&mut big)).await,
            ),
        ),
        (
            "read_bytes",
            failed("read_bytes", within(input.read_bytes(4)).await),
        ),
        (
            "read_remaining",
            failed("read_remaining", within(input.read_remaining(1024)).await),
        ),
        (
            "discard",
            failed("discard", within(input.discard(10)).await),
        ),
        (
            "discard_exact",
            failed("discard_exact", within(input.discard_exact(10)).await),
        ),
        (
            "await_content",
            failed("await_content", within(input.await_content(1)).await),
        ),
        ("peek", failed("peek", within(input.peek(1)).await)),
        (
            "skip_if_found",
            failed("skip_if_found", within(input.skip_if_found(b"x")).await),
        ),
        (
            "copy_to",
            failed("copy_to", within(input.copy_to(&mut sink, 1024)).await),
        ),
    ];
    for (what, got) in results {
        assert_eq!(&got, first, "{case}: {what}");
    }
    // tokio's traits: an io::Error of the same kind and OS code.
    for what in ["AsyncRead::read", "AsyncBufRead::fill_buf"] {
        let r = if what == "AsyncRead::read" {
            within(AsyncReadExt::read(input, &mut buf))
                .await
                .map(|n| n.to_string())
        } else {
            within(AsyncBufReadExt::fill_buf(input))
                .await
                .map(|b| format!("{b:?}"))
        };
        match r {
            Ok(v) => panic!("{case}: {what}: answered {v} after the failure"),
            Err(e) => {
                assert_eq!(e.kind(), first.0, "{case}: {what}: {e:?}");
                if first.1.is_some() {
                    let code = e.raw_os_error().or_else(|| {
                        e.get_ref()
                            .and_then(|inner| inner.downcast_ref::<net_io::Error>())
                            .and_then(|n| match n {
                                net_io::Error::Io(io) => io.raw_os_error(),
                                _ => None,
                            })
                    });
                    assert_eq!(code, first.1, "{case}: {what}: {e:?}");
                }
            }
        }
    }
}

/// "Two rules hold for every row: an error is reported again with its type — after a
/// transport failure every later read reports the same variant, kind, OS error code": the
/// named tests use `read_line`, `read_u8` and a stream view; here every read of the channel
/// after a reset, a local close and a selector close.
#[tokio::test]
async fn every_kind_of_read_reports_a_failure_again_with_its_type() {
    // A reset.
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (peer, mut accepted) = raw_peer_of(&listener).await;
    let mut input = accepted.open_read_channel().unwrap();
    socket2::SockRef::from(&peer)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(peer);
    let first = shape(
        &within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap_err(),
    );
    assert_eq!(first.0, ErrorKind::ConnectionReset, "{first:?}");
    every_read_reports(&mut input, &first, "reset").await;

    // A local close, then the selector's.
    for local in [true, false] {
        let selector = SelectorManager::new();
        let listener = tcp_listener(&selector).await;
        let (_client, mut server) = connected_pair(&selector, &listener).await;
        let mut input = server.open_read_channel().unwrap();
        if local {
            server.close();
        } else {
            selector.close();
        }
        let e = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap_err();
        let first = shape(&e);
        match Error::from(e) {
            Error::Closed if local => {}
            Error::SelectorClosed if !local => {}
            other => panic!("local {local}: {other:?}"),
        }
        every_read_reports(
            &mut input,
            &first,
            if local { "close" } else { "selector close" },
        )
        .await;
    }
}

/// The same over TLS: after a truncation (FIN without `close_notify`: "on every later read
/// too", `UnexpectedEof` whose inner error is `net_tls::Truncated`) and after a reset, every
/// read of the channel reports the same error, its inner error included.
#[tokio::test]
async fn every_kind_of_tls_read_reports_a_failure_again_with_its_type() {
    for reset in [false, true] {
        let selector = SelectorManager::new();
        let pki = net_tests::pki::Pki::generate();
        let listener = tcp_listener(&selector).await;
        let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut input = server.open_read_channel().unwrap();
        if reset {
            client
                .with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
                .unwrap();
            drop(client);
        } else {
            client
                .with_sock_ref(|s| s.shutdown(std::net::Shutdown::Write))
                .unwrap();
        }
        let e = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap_err();
        if reset {
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e:?}");
        } else {
            assert!(net_tests::tls::is_truncated(&e), "{e:?}");
        }
        let first = shape(&e);
        every_read_reports(
            &mut input,
            &first,
            if reset { "tls reset" } else { "tls truncation" },
        )
        .await;
    }
}

/// Every kind of write of a write channel that failed (`first`) reports the same error.
async fn every_write_reports(
    output: &mut net_io::ByteWriteChannel,
    first: &(ErrorKind, Option<i32>, String),
    case: &str,
) {
    use tokio::io::AsyncWriteExt;
    let big = payload(64 * 1024);
    let results = [
        (
            "write_fully small",
            within(output.write_fully(b"x"))
                .await
                .map(|()| String::new()),
        ),
        (
            "write_fully large",
            within(output.write_fully(&big))
                .await
                .map(|()| String::new()),
        ),
        (
            "write_bytes",
            within(output.write_bytes(bytes::Bytes::from_static(b"y")))
                .await
                .map(|()| String::new()),
        ),
        (
            "write_string_utf8",
            within(output.write_string_utf8("z"))
                .await
                .map(|()| String::new()),
        ),
        (
            "write_u32",
            within(output.write_u32(7)).await.map(|()| String::new()),
        ),
        (
            "flush",
            within(output.flush()).await.map(|()| String::new()),
        ),
    ];
    for (what, r) in results {
        match r {
            Ok(_) => panic!("{case}: {what} succeeded after the failure"),
            Err(e) => assert_eq!(&shape(&e), first, "{case}: {what}: {e:?}"),
        }
    }
    assert!(output.is_closed_for_write(), "{case}");
    for what in ["AsyncWrite::write", "AsyncWrite::flush"] {
        let r = if what == "AsyncWrite::write" {
            within(AsyncWriteExt::write(output, b"w"))
                .await
                .map(|n| n.to_string())
        } else {
            within(AsyncWriteExt::flush(output))
                .await
                .map(|()| String::new())
        };
        match r {
            Ok(v) => panic!("{case}: {what} answered {v:?} after the failure"),
            Err(e) => assert_eq!(e.kind(), first.0, "{case}: {what}: {e:?}"),
        }
    }
    let closed = within(output.flush_and_close()).await;
    match closed {
        Ok(()) => panic!("{case}: flush_and_close succeeded after the failure"),
        Err(e) => assert_eq!(&shape(&e), first, "{case}: flush_and_close: {e:?}"),
    }
}

/// Rows "We write after the peer left" ("every later write fails the same way") and, for TLS,
/// "The socket fails (the peer reset) under a write whose bytes rustls took" ("The next write
/// reports the socket's error ... and so does every later one"): every kind of write, with
/// and without auto-flush (a write the buffer could take must fail too), and the flush and
/// half-close.
#[tokio::test]
async fn every_kind_of_write_reports_a_failure_again_with_its_type() {
    for tls in [false, true] {
        for auto_flush in [true, false] {
            let case = format!("tls {tls}, auto_flush {auto_flush}");
            let selector = SelectorManager::new();
            let listener = tcp_listener(&selector).await;
            let (mut output, peer_closer, _keep): (
                net_io::ByteWriteChannel,
                Box<dyn FnOnce()>,
                Box<dyn std::any::Any>,
            ) = if tls {
                let pki = net_tests::pki::Pki::generate();
                let (mut server, client) =
                    net_tests::tls::pair_of(&selector, &listener, &pki).await;
                let output = server.open_write_channel(auto_flush).unwrap();
                (
                    output,
                    Box::new(move || {
                        client
                            .with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
                            .unwrap();
                        drop(client);
                    }),
                    Box::new(server),
                )
            } else {
                let (peer, mut accepted) = raw_peer_of(&listener).await;
                let output = accepted.open_write_channel(auto_flush).unwrap();
                (
                    output,
                    Box::new(move || {
                        socket2::SockRef::from(&peer)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                        drop(peer);
                    }),
                    Box::new(accepted),
                )
            };
            peer_closer();
            let chunk = payload(16 * 1024);
            let first = within(async {
                loop {
                    if let Err(e) = output.write_fully(&chunk).await {
                        break e;
                    }
                    if let Err(e) = output.flush().await {
                        break e;
                    }
                }
            })
            .await;
            assert!(
                matches!(
                    first.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::BrokenPipe
                ),
                "{case}: {first:?}"
            );
            let first = shape(&first);
            every_write_reports(&mut output, &first, &case).await;
        }
    }
}

/// A server that read `WATCH` of `"WATCH\n\n"` (the empty line stays unread) and pushes with an
/// auto-flushed write channel, whatever `push` does: (client, pushing task's handle, sender).
async fn a_push_server_that_keeps_its_read_channel<F, Fut>(
    selector: &SelectorManager,
    push: F,
) -> (
    tokio::net::TcpStream,
    tokio::task::JoinHandle<()>,
    net_sockets::ServerSocket,
)
where
    F: FnOnce(net_io::ByteReadChannel, net_io::ByteWriteChannel, net_sockets::Socket) -> Fut
        + Send
        + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncWriteExt;
    let server = tcp_listener(selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(true).unwrap();
    client.write_all(b"WATCH\n\n").await.unwrap();
    let command = within(input.read_line(1024, LineEnding::Default))
        .await
        .unwrap();
    assert_eq!(command.as_deref(), Some("WATCH"));
    let task = tokio::spawn(push(input, output, socket));
    (client, task, server)
}

/// Row "Flush coalescing on, and the reader stops reading while input it received is still
/// unread": what is written "is held back until the reader waits for input or sees the end of
/// its stream, its read channel is dropped, a write would pass the 64 KiB held, or the write
/// side closes". The named test covers the dropped read channel only; here the three others.
#[tokio::test]
async fn pushes_held_back_by_unread_input_leave_at_each_documented_moment() {
    use tokio::io::AsyncReadExt;
    let selector = SelectorManager::new();
    let push = |n: usize| format!("event {n:04} {}\n", "x".repeat(1012)); // 1,024 bytes

    // A write that would pass the 64 KiB held: what was held leaves, though the reader never
    // waits again and nothing closes.
    let (release, wait) = tokio::sync::oneshot::channel::<()>();
    let (mut client, task, _server) = a_push_server_that_keeps_its_read_channel(
        &selector,
        move |input, mut output, socket| async move {
            for n in 0..70 {
                within(output.write_string_utf8(&push(n))).await.unwrap();
            }
            within(output.flush()).await.unwrap();
            let _ = wait.await;
            drop((input, output, socket));
        },
    )
    .await;
    let mut got = vec![0u8; 64 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got)).await;
    assert!(
        read.is_ok(),
        "70 KiB of pushes written: not even 64 KiB arrived in 5 s"
    );
    let expected: String = (0..64).map(push).collect();
    assert!(
        got == expected.as_bytes(),
        "the first 64 KiB are not the first 64 pushes"
    );
    let _ = release.send(());
    within(task).await.unwrap();

    // The write side closes: everything, then the FIN.
    let (mut client, task, _server) = a_push_server_that_keeps_its_read_channel(
        &selector,
        move |input, mut output, socket| async move {
            for n in 0..3 {
                within(output.write_string_utf8(&push(n))).await.unwrap();
            }
            within(output.flush_and_close()).await.unwrap();
            // The reader still holds the unread empty line, and the socket stays open.
            let _keep = (input, socket);
            tokio::time::sleep(Duration::from_secs(30)).await;
        },
    )
    .await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut got)).await;
    assert!(
        read.is_ok(),
        "after flush_and_close: got {} bytes, no end",
        got.len()
    );
    assert!(
        got == (0..3).map(push).collect::<String>().as_bytes(),
        "{} bytes, not the 3 pushes",
        got.len()
    );
    task.abort();

    // The reader waits for input: it reads the empty line (at once), then waits.
    let (mut client, task, _server) = a_push_server_that_keeps_its_read_channel(
        &selector,
        move |mut input, mut output, socket| async move {
            for n in 0..3 {
                within(output.write_string_utf8(&push(n))).await.unwrap();
            }
            let empty = input.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(empty.as_deref(), Some(""));
            let next = input.read_line(64, LineEnding::Default).await;
            drop((input, output, socket, next));
        },
    )
    .await;
    let mut got = vec![0u8; 3 * 1024];
    let read = tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got)).await;
    assert!(read.is_ok(), "the reader waits: the pushes did not arrive");
    assert!(
        got == (0..3).map(push).collect::<String>().as_bytes(),
        "not the 3 pushes"
    );
    drop(client);
    within(task).await.unwrap();
}

/// The same over TLS ("TLS sockets coalesce too"): a write that would pass the 64 KiB held,
/// and the write side's close, release what unread input held back. (Over TLS the 64 KiB are
/// of records: 63 pushes of 1 KiB, 22 bytes of record overhead each, leave when the 64th
/// would pass them.)
#[tokio::test]
async fn tls_pushes_held_back_by_unread_input_leave_at_each_documented_moment() {
    let push = |n: usize| format!("event {n:04} {}\n", "x".repeat(1012));
    for close in [false, true] {
        let selector = SelectorManager::new();
        let pki = net_tests::pki::Pki::generate();
        let listener = tcp_listener(&selector).await;
        let (mut server, mut client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
        let mut client_out = client.open_write_channel(true).unwrap();
        let mut client_in = client.open_read_channel().unwrap();
        let mut input = server.open_read_channel().unwrap();
        let mut output = server.open_write_channel(true).unwrap();
        client_out.write_string_utf8("WATCH\n\n").await.unwrap();
        let command = within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap();
        assert_eq!(command.as_deref(), Some("WATCH"));
        let count = if close { 3 } else { 70 };
        let (release, wait) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            for n in 0..count {
                within(output.write_string_utf8(&push(n))).await.unwrap();
            }
            if close {
                within(output.flush_and_close()).await.unwrap();
            }
            let _ = wait.await;
            drop((input, output, server));
        });
        let expected: String = (0..count.min(60)).map(push).collect();
        let mut got = vec![0u8; expected.len()];
        let read =
            tokio::time::timeout(Duration::from_secs(5), client_in.read_fully(&mut got)).await;
        assert!(
            matches!(read, Ok(Ok(()))),
            "close {close}: the pushes did not arrive: {read:?}"
        );
        assert!(got == expected.as_bytes(), "close {close}: not the pushes");
        if close {
            let end = within(client_in.read_line(64, LineEnding::Default)).await;
            assert!(matches!(end, Ok(None)), "close {close}: {end:?}");
        }
        let _ = release.send(());
        within(task).await.unwrap();
        drop((client_in, client_out, client));
    }
}

/// Row "A graceful shutdown (`SelectorManager::shutdown(grace)`)": "every connection's
/// `shutdown_requested()` completes; after `grace`, connections still open are closed; the
/// report says how many of those open when it began finished and how many were cut" — the
/// selector's doc counts "accepted and connected ones". The named tests use accepted
/// connections; here a socket the selector connected (to a tokio listener), one over Unix, and
/// one accepted by a listener closed before the shutdown, beside one that ignores the signal.
#[tokio::test]
async fn a_selector_shutdown_signals_and_counts_connected_sockets_and_orphaned_accepts() {
    let selector = SelectorManager::new();
    let outside = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let connected = within(
        a_socket(&selector)
            .tcp()
            .connect(outside.local_addr().unwrap()),
    )
    .await
    .unwrap();
    let (_outside_peer, _) = within(outside.accept()).await.unwrap();

    let dir = net_tests::TempDir::new("shutdown-unix");
    let path = dir.join("s.sock");
    let _unix_listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let unix = within(
        a_socket(&selector)
            .tcp()
            .connect(net_sockets::UnixSocketAddress::new(&path)),
    )
    .await
    .unwrap();

    // Their clients are tokio's, not sockets of this selector.
    let listener = tcp_listener(&selector).await;
    let (_client_of_orphan, orphan) = raw_peer_of(&listener).await;
    listener.close();
    let (_client_of_stubborn, stubborn) = {
        let listener = tcp_listener(&selector).await;
        raw_peer_of(&listener).await
    };

    let polite = |socket: net_sockets::Socket| {
        tokio::spawn(async move {
            within(socket.shutdown_requested()).await;
            socket.close();
        })
    };
    let handlers = [polite(connected), polite(unix), polite(orphan)];
    const GRACE: Duration = Duration::from_millis(500);
    let started = Instant::now();
    let report = within(selector.shutdown(GRACE)).await;
    let took = started.elapsed();
    for handler in handlers {
        within(handler).await.unwrap();
    }
    assert_eq!((report.finished, report.cut), (3, 1), "{report:?}");
    assert!(
        took >= GRACE,
        "returned after {took:?} with a connection open"
    );
    assert!(stubborn.is_closed());
}

/// Row "A read future (`read_line`, `read_u64`, ...) dropped before its item is complete":
/// "Nothing is consumed: the next read sees every byte". The named test drops `read_line` and
/// `read_u64`; here the other reads documented as cancel safe, each started and dropped after
/// every byte of its item arrived (over a socket), then run to completion.
#[tokio::test]
async fn every_cancel_safe_read_dropped_at_every_byte_loses_nothing() {
    use tokio::io::AsyncWriteExt;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut peer, mut accepted) = raw_peer_of(&listener).await;
    let mut input = accepted.open_read_channel().unwrap();
    let mut line = String::from("kept:");
    for (name, item) in [
        ("read_until", &b"ab\r\n\r\ncd\r\n.\r\n"[..]),
        ("read_line_to", b"h\xc3\xa9llo\r\n"),
        ("read_line_strict", b"strict\n"),
        ("read_utf8_line", b"lenient\r"),
        ("read_bytes", b"0123456789"),
        ("peek", b"look"),
        ("read_u32", b"\x00\x00\x01\x02"),
    ] {
        for (i, byte) in item.iter().enumerate() {
            peer.write_all(&[*byte]).await.unwrap();
            let have = input.available_for_read();
            if have < i + 1 {
                assert!(within(input.await_content(i + 1)).await.unwrap());
            }
            if i + 1 == item.len() {
                break;
            }
            let pending = match name {
                "read_until" => {
                    let mut f = Box::pin(input.read_until(b"\r\n.\r\n", 64));
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
                "read_line_to" => {
                    let mut f = Box::pin(input.read_line_to(&mut line, 64, LineEnding::Default));
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
                "read_line_strict" => {
                    let mut f = Box::pin(input.read_line_strict(64, LineEnding::Default));
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
                "read_utf8_line" => {
                    let mut f = Box::pin(input.read_utf8_line(64));
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
                "read_bytes" => {
                    let mut f = Box::pin(input.read_bytes(item.len()));
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
                "peek" => {
                    let mut f = Box::pin(input.peek(item.len()));
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
                _ => {
                    let mut f = Box::pin(input.read_u32());
                    net_tests::pending_after_one_poll(f.as_mut()).await
                }
            };
            assert!(pending, "{name}: complete after {} bytes", i + 1);
            if name == "read_line_to" {
                assert_eq!(line, "kept:", "read_line_to touched its string");
            }
        }
        match name {
            "read_until" => {
                let got = within(input.read_until(b"\r\n.\r\n", 64)).await.unwrap();
                assert_eq!(got.as_deref(), Some(&b"ab\r\n\r\ncd"[..]));
            }
            "read_line_to" => {
                let n = within(input.read_line_to(&mut line, 64, LineEnding::Default))
                    .await
                    .unwrap();
                assert_eq!((n, line.as_str()), (Some(6), "kept:héllo"));
            }
            "read_line_strict" => {
                let got = within(input.read_line_strict(64, LineEnding::Default))
                    .await
                    .unwrap();
                assert_eq!(got.as_deref(), Some("strict"));
            }
            "read_utf8_line" => {
                // A lone CR ends a lenient line once the next byte shows it is no CRLF.
                peer.write_all(b"x").await.unwrap();
                let got = within(input.read_utf8_line(64)).await.unwrap();
                assert_eq!(got.as_deref(), Some("lenient"));
                assert_eq!(within(input.read_u8()).await.unwrap(), b'x');
            }
            "read_bytes" => {
                let got = within(input.read_bytes(item.len())).await.unwrap();
                assert_eq!(&got[..], item);
            }
            "peek" => {
                let got = within(input.peek(item.len())).await.unwrap();
                assert_eq!(got.as_deref(), Some(item));
                let got = within(input.read_bytes(item.len())).await.unwrap();
                assert_eq!(&got[..], item);
            }
            _ => assert_eq!(within(input.read_u32()).await.unwrap(), 0x0102),
        }
        assert_eq!(input.available_for_read(), 0, "{name}: bytes left over");
    }
}

/// Row "A Unix socket path longer than this crate puts in a socket address": "`bind` and
/// `connect` fail with `Error::Io`, kind `InvalidInput`, the message naming the path, its
/// length and the limit; no file is made". The named tests check the kind for both, and the
/// numbers in `bind`'s message only; here the path too, and `connect`'s message.
#[tokio::test]
async fn a_too_long_unix_path_is_named_with_its_length_and_the_limit_by_bind_and_connect() {
    let selector = SelectorManager::new();
    let dir = std::env::temp_dir();
    let base = format!("{}/long-{}-", dir.display(), std::process::id());
    let too_long = std::path::PathBuf::from(format!("{base}{}", "z".repeat(150 - base.len())));
    let bind = a_socket(&selector)
        .tcp()
        .bind(net_sockets::UnixSocketAddress::new(&too_long))
        .await
        .map(|_| ())
        .unwrap_err();
    let connect = a_socket(&selector)
        .tcp()
        .connect(net_sockets::UnixSocketAddress::new(&too_long))
        .await
        .map(|_| ())
        .unwrap_err();
    for (what, e) in [("bind", bind), ("connect", connect)] {
        assert!(matches!(e, Error::Io(_)), "{what}: {e:?}");
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e:?}");
        let message = e.to_string();
        assert!(
            message.contains(&*too_long.to_string_lossy()),
            "{what}: no path in {message:?}"
        );
        assert!(message.contains("150"), "{what}: no length in {message:?}");
        assert!(message.contains("107"), "{what}: no limit in {message:?}");
    }
    assert!(!too_long.exists());
}

/// `ServerSocket::stats` (named by the rows on `max_connections_per_ip`, PROXY headers and a
/// listener's close): `open` counts the connections handed out that are open now, whichever way
/// they end — a `close`, a drop, a TLS session's close, a socket that closes itself once its
/// peer's FIN was read and its write channel closed — and `max_connections` frees their slots.
#[tokio::test]
async fn stats_count_open_connections_down_however_they_end() {
    use net_tls::TlsExt;
    use tokio::io::AsyncWriteExt;
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let listener = tcp_listener_with(&selector, |b| b.max_connections(4)).await;
    let port = listener.port().unwrap();
    let (_p1, closed) = raw_peer_of(&listener).await;
    let (_p2, dropped) = raw_peer_of(&listener).await;
    let (mut p3, mut half) = raw_peer_of(&listener).await;
    let tls_client = tokio::spawn({
        let config = pki.client_config().build().unwrap();
        let selector = selector.clone();
        async move {
            net_tests::tls::connect(&selector, "localhost", port, config)
                .await
                .unwrap()
        }
    });
    let tls_server = within(
        within(listener.accept())
            .await
            .unwrap()
            .tls_server(&server_config),
    )
    .await
    .unwrap();
    let tls_client = within(tls_client).await.unwrap();
    let stats = listener.stats();
    assert_eq!((stats.accepted, stats.open), (4, 4), "{stats:?}");
    // At the cap: the next accept waits.
    let _waiting_peer = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    {
        let mut next = Box::pin(listener.accept());
        assert!(
            net_tests::pending_after_one_poll(next.as_mut()).await,
            "accept past the cap"
        );
    }

    closed.close();
    assert_eq!(listener.stats().open, 3);
    drop(dropped);
    assert_eq!(listener.stats().open, 2);
    tls_server.close();
    assert_eq!(listener.stats().open, 1);

    // The peer's FIN read to the end, and the write channel closed: the socket closes itself.
    let mut input = half.open_read_channel().unwrap();
    let mut output = half.open_write_channel(false).unwrap();
    p3.shutdown().await.unwrap();
    assert_eq!(
        within(input.read_line(64, LineEnding::Default))
            .await
            .unwrap(),
        None
    );
    within(output.flush_and_close()).await.unwrap();
    within(half.await_closed()).await;
    assert_eq!(listener.stats().open, 0, "{:?}", listener.stats());
    // The slots are free: the waiting connection is accepted.
    let accepted = within(listener.accept()).await.unwrap();
    assert_eq!(listener.stats().open, 1);
    drop((accepted, tls_client, input, output, half));
}
