//! The libraries inside the runtimes and test harnesses users have: a paused clock
//! (`#[tokio::test(start_paused = true)]`), whose timers the runtime jumps to whenever it has
//! nothing else to do; a current-thread runtime with a `LocalSet`; busy polling on a paused
//! runtime. Every timeout fires exactly when its duration has passed on that clock, neither at
//! once nor never, and nothing keeps a paused runtime from moving on.
//!
//! Each paused runtime runs on a thread of its own, watched on the real clock: its own timers
//! jump ahead, so a hang is caught by the test's thread, not by a timer of that runtime. Its
//! clock is paused (`tokio::time::pause`, what `start_paused` does at the start) once the
//! connections are set up: a paused runtime with nothing to do jumps to its next timer at once,
//! also while loopback traffic of the set-up is still on its way (the kernel may defer it to
//! `ksoftirqd` on a busy machine), and the set-up's timers (a TLS handshake's) must not fire
//! then.

use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{ProxyProtocol, SelectorManager};
use net_tests::HANG_LIMIT;
use net_tests::loopback::{accepted_with_full_buffers, connected_pair, tcp_listener_with};
use net_tests::paused::{exactly, paused};
use net_tests::pki::Pki;
use net_tls::TlsExt;
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

/// Pauses the runtime's clock (its set-up done): "now", frozen.
fn pause_now() -> Instant {
    tokio::time::pause();
    Instant::now()
}

const LIMIT: Duration = Duration::from_secs(30);

/// `socket_timeout` on a paused clock: a read whose peer sends nothing fails with `Timeout`
/// once the clock jumped to its deadline, with and without busy polling.
#[test]
fn socket_timeout_fires_on_a_paused_clock() {
    for busy in [Duration::ZERO, Duration::from_micros(200)] {
        paused(move || async move {
            let selector = SelectorManager::with_busy_poll(busy);
            let listener = tcp_listener_with(&selector, |b| b.socket_timeout(LIMIT)).await;
            let (_client, mut server) = connected_pair(&selector, &listener).await;
            let mut input = server.open_read_channel().unwrap();
            let started = pause_now();
            let read = input.read_line(64, LineEnding::Default).await;
            assert!(matches!(read, Err(net_io::Error::Timeout)), "{read:?}");
            exactly(started.elapsed(), LIMIT);
            selector.close();
        });
    }
}

/// `proxy_header_timeout` on a paused clock: a client that sends no header, while an accept
/// waits (the listener reads headers for it), is dropped once the clock jumped to its deadline;
/// the accept waits on.
#[test]
fn proxy_header_timeout_fires_on_a_paused_clock() {
    paused(|| async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| {
            b.proxy_protocol(ProxyProtocol::Required)
                .proxy_header_timeout(LIMIT)
        })
        .await;
        let port = listener.port().unwrap();
        // The listener reads headers while an accept waits.
        let listener = std::sync::Arc::new(listener);
        let accepting = tokio::spawn({
            let listener = listener.clone();
            async move { listener.accept().await }
        });
        // Paused before the header's timer starts (as the accept takes the connection).
        tokio::time::pause();
        let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let started = Instant::now();
        let mut byte = [0; 1];
        let end = silent.read(&mut byte).await;
        assert!(matches!(end, Ok(0)) || end.is_err(), "{end:?}");
        exactly(started.elapsed(), LIMIT);
        assert!(!accepting.is_finished());
        selector.close();
    });
}

/// A TLS handshake's timeout on a paused clock: a server handshake with a client that sends
/// nothing fails with `HandshakeTimeout` once the clock jumped to its deadline; so does a
/// client handshake with a server that answers nothing.
#[test]
fn tls_handshake_timeouts_fire_on_a_paused_clock() {
    paused(|| async {
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let server_config = pki
            .server_config()
            .handshake_timeout(LIMIT)
            .build()
            .unwrap();
        let client_config = pki
            .client_config()
            .handshake_timeout(LIMIT)
            .build()
            .unwrap();
        let (client, server) = connected_pair(&selector, &listener).await;
        let (other_client, _other_server) = connected_pair(&selector, &listener).await;

        let started = pause_now();
        let handshake = server.tls_server(&server_config).await;
        assert!(
            matches!(handshake, Err(net_tls::Error::HandshakeTimeout(_))),
            "{handshake:?}"
        );
        exactly(started.elapsed(), LIMIT);
        drop(client);

        let started = Instant::now();
        let handshake = other_client.tls(client_config).await;
        assert!(
            matches!(handshake, Err(net_tls::Error::HandshakeTimeout(_))),
            "{handshake:?}"
        );
        exactly(started.elapsed(), LIMIT);
        selector.close();
    });
}

/// `close_gracefully(wait)` on a paused clock, its peer reading nothing: `Timeout` once the
/// clock jumped to `wait`.
#[test]
fn close_gracefully_gives_up_on_a_paused_clock() {
    paused(|| async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let (socket, _peer) = accepted_with_full_buffers(&listener).await;
        let mut connection = socket.connection().unwrap();
        connection.output.write_fully(b"bye\n").await.unwrap();
        let started = pause_now();
        let closed = connection.close_gracefully(LIMIT).await;
        assert!(
            matches!(closed, Err(net_sockets::Error::Timeout)),
            "{closed:?}"
        );
        exactly(started.elapsed(), LIMIT);
        selector.close();
    });
}

/// Graceful shutdowns on a paused clock, a connection held open: the selector's and the
/// listener's cut it once the clock jumped to the end of the grace period.
#[test]
fn graceful_shutdowns_end_their_grace_on_a_paused_clock() {
    for whole_selector in [false, true] {
        paused(move || async move {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b).await;
            let port = listener.port().unwrap();
            let _client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let _server = listener.accept().await.unwrap();
            let started = pause_now();
            let report = if whole_selector {
                selector.shutdown(LIMIT).await
            } else {
                listener.shutdown(LIMIT).await
            };
            assert_eq!((report.finished, report.cut), (0, 1), "{report:?}");
            exactly(started.elapsed(), LIMIT);
            selector.close();
        });
    }
}

/// A paused runtime with a busy-polling selector, one of whose reads waits (no timeout) while
/// the test sleeps an hour: the spinner polls for its window of real time, then lets the clock
/// jump.
#[test]
fn a_busy_polling_selector_lets_a_paused_clock_jump() {
    paused(|| async {
        let selector = SelectorManager::with_busy_poll(Duration::from_micros(200));
        let listener = tcp_listener_with(&selector, |b| b).await;
        let (_client, mut server) = connected_pair(&selector, &listener).await;
        let mut input = server.open_read_channel().unwrap();
        let reading = tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
        let started = pause_now();
        tokio::time::sleep(Duration::from_secs(3600)).await;
        exactly(started.elapsed(), Duration::from_secs(3600));
        assert!(!reading.is_finished());
        selector.close();
        let read = reading.await.unwrap();
        assert!(read.is_err(), "{read:?}");
    });
}

/// TLS connections (channels, a `Connection`, a `TlsStream`) of a `SelectorManager::new()`
/// selector whose runtime ended, used and dropped on a plain thread (no tokio context): a read
/// fails with `SelectorClosed`, every other operation with an error, and nothing panics
/// ("there is no reactor running").
#[test]
fn tls_connections_used_and_dropped_on_a_plain_thread_after_their_runtime_ended() {
    use tokio::io::AsyncWriteExt;
    for multi_thread in [false, true] {
        let runtime = if multi_thread {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
        } else {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
        }
        .unwrap();
        let (selector, listener, channels, connection, stream) = runtime.block_on(async {
            let pki = Pki::generate();
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b).await;
            let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
            let channels = (
                server.open_read_channel().unwrap(),
                server.open_write_channel(true).unwrap(),
                server,
                client,
            );
            let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
            let connection = (server.connection().unwrap(), client);
            let (server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
            let stream = (client.into_stream().unwrap(), server);
            (selector, listener, channels, connection, stream)
        });
        drop(runtime);
        let used = std::thread::spawn(move || {
            net_tests::block_on(async move {
                let (mut input, mut output, server, _client) = channels;
                let read = input.read_line(64, LineEnding::Default).await;
                assert!(
                    matches!(
                        read.map_err(net_sockets::Error::from),
                        Err(net_sockets::Error::SelectorClosed)
                    ),
                    "read"
                );
                let write = output.write_string_utf8("x\n").await;
                assert!(write.is_err(), "{write:?}");
                server.close();

                let (connection, _client) = connection;
                let closed = connection.close_gracefully(Duration::from_secs(5)).await;
                assert!(closed.is_err(), "{closed:?}");

                let (mut stream, _server) = stream;
                assert!(stream.write_all(b"x").await.is_err());
                let mut byte = [0; 1];
                assert!(stream.read(&mut byte).await.is_err());
                let _ = stream.shutdown().await;
                drop(stream);

                assert!(listener.accept().await.is_err());
                drop((listener, selector));
            })
        });
        used.join()
            .unwrap_or_else(|_| panic!("multi_thread {multi_thread}: a panic on the plain thread"));
    }
}

/// On a runtime without timers (`enable_io` alone), a listener with the PROXY protocol on
/// (whose header has a timeout, 5 s by default) panics in `accept` with tokio's message, as
/// `SelectorManager::new`'s "Panics" section says: never a hang, never a connection taken
/// without its header's deadline.
#[test]
fn without_timers_a_proxy_protocol_listeners_accept_panics() {
    let (done, outcome) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .unwrap();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            runtime.block_on(async {
                let selector = SelectorManager::new();
                let listener = net_sockets::a_socket(&selector)
                    .tcp()
                    .proxy_protocol(ProxyProtocol::Required)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let port = listener.port().unwrap();
                let _client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let _ = listener.accept().await;
            })
        }));
        let _ = done.send(result.map_err(|payload| {
            payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        }));
    });
    match outcome.recv_timeout(HANG_LIMIT) {
        Ok(Err(message)) => assert!(message.contains("timers are disabled"), "{message}"),
        Ok(Ok(())) => panic!("accept returned without the documented panic"),
        Err(_) => panic!("accept hung for {HANG_LIMIT:?} instead of the documented panic"),
    }
}

/// `socket_timeout`'s promise to a `select!` loop, on a paused clock: a loop that makes a new
/// read each turn beside a heartbeat every second still ends once `socket_timeout` passed
/// without input, plain and over TLS, at exactly that moment.
#[test]
fn a_select_loop_of_new_reads_ends_after_socket_timeout_on_a_paused_clock() {
    const TIMEOUT: Duration = Duration::from_secs(5);
    for tls in [false, true] {
        paused(move || async move {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b.socket_timeout(TIMEOUT)).await;
            let (mut input, _rest): (net_io::ByteReadChannel, Box<dyn std::any::Any>) = if tls {
                let pki = Pki::generate();
                let (mut server, client) =
                    net_tests::tls::pair_of(&selector, &listener, &pki).await;
                (
                    server.open_read_channel().unwrap(),
                    Box::new((server, client)),
                )
            } else {
                let (client, mut server) = connected_pair(&selector, &listener).await;
                (
                    server.open_read_channel().unwrap(),
                    Box::new((server, client)),
                )
            };
            let started = pause_now();
            let mut beats = 0;
            let read = loop {
                tokio::select! {
                    biased;
                    read = input.read_line(64, LineEnding::Default) => break read,
                    () = tokio::time::sleep(Duration::from_secs(1)) => beats += 1,
                }
                assert!(beats < 100, "tls {tls}: the loop never ended");
            };
            assert!(
                matches!(read, Err(net_io::Error::Timeout)),
                "tls {tls}: {read:?}"
            );
            exactly(started.elapsed(), TIMEOUT);
            assert!((4..=5).contains(&beats), "tls {tls}: {beats} beats");
            selector.close();
        });
    }
}

/// The longest duration the (paused) clock can add to its "now", less `before_end`: a deadline
/// in the clock's last millisecond.
fn to_the_clocks_end(before_end: Duration) -> Duration {
    let now = Instant::now();
    let fits = |d: Duration| now.checked_add(d).is_some();
    let (mut secs, mut top) = (0u64, u64::MAX);
    while secs < top {
        let mid = secs + (top - secs).div_ceil(2);
        if fits(Duration::from_secs(mid)) {
            secs = mid
        } else {
            top = mid - 1
        }
    }
    let (mut nanos, mut top) = (0u32, 999_999_999u32);
    while nanos < top {
        let mid = nanos + (top - nanos).div_ceil(2);
        if fits(Duration::new(secs, mid)) {
            nanos = mid
        } else {
            top = mid - 1
        }
    }
    Duration::new(secs, nanos) - before_end
}

/// Guard (SPEC §4.1: no duration option panics): the timeouts that run on a sleep of the
/// selector's runtime, given a duration whose deadline falls in the clock's last millisecond
/// (where the idle timer of `socket_timeout` needed a guard of its own: see
/// `stream::tests::a_timeout_ending_in_the_clocks_last_millisecond_is_no_timeout`):
/// `close_gracefully`'s `wait`, the graceful shutdowns' grace, `connect_timeout`, the TLS
/// handshake's timeout and `proxy_header_timeout`. Each operation is still waiting an hour
/// later (on the paused clock), without a panic.
#[test]
fn durations_that_end_in_the_clocks_last_millisecond_are_no_timeout() {
    const HOUR: Duration = Duration::from_secs(3600);
    for case in 0..6 {
        paused(move || async move {
            // Pauses the clock (the case's set-up done) and gives the duration to its end.
            let long = || {
                tokio::time::pause();
                to_the_clocks_end(Duration::from_micros(500))
            };
            let selector = SelectorManager::new();
            let waited = match case {
                0 => {
                    let listener = tcp_listener_with(&selector, |b| b).await;
                    let (socket, _peer) = accepted_with_full_buffers(&listener).await;
                    let mut connection = socket.connection().unwrap();
                    connection.output.write_fully(b"bye\n").await.unwrap();
                    let long = long();
                    tokio::time::timeout(HOUR, connection.close_gracefully(long))
                        .await
                        .map(|_| ())
                }
                1 | 2 => {
                    let listener = tcp_listener_with(&selector, |b| b).await;
                    let (_client, _server) = connected_pair(&selector, &listener).await;
                    let long = long();
                    if case == 1 {
                        tokio::time::timeout(HOUR, selector.shutdown(long))
                            .await
                            .map(|_| ())
                    } else {
                        tokio::time::timeout(HOUR, listener.shutdown(long))
                            .await
                            .map(|_| ())
                    }
                }
                3 => {
                    let listener = net_tests::loopback::never_accepting_listener(&selector).await;
                    // Fill the backlog so that a further connect stays pending.
                    let mut held = Vec::new();
                    let to: std::net::SocketAddr =
                        listener.local_address().to_string().parse().unwrap();
                    for _ in 0..8 {
                        let socket = socket2::Socket::new(
                            socket2::Domain::IPV4,
                            socket2::Type::STREAM,
                            None,
                        )
                        .unwrap();
                        socket.set_nonblocking(true).unwrap();
                        let _in_progress = socket.connect(&to.into());
                        held.push(socket);
                    }
                    let connect = net_sockets::a_socket(&selector)
                        .tcp()
                        .connect_timeout(long())
                        .connect(listener.local_address());
                    tokio::time::timeout(HOUR, connect).await.map(|_| ())
                }
                4 => {
                    let pki = Pki::generate();
                    let listener = tcp_listener_with(&selector, |b| b).await;
                    let (_client, server) = connected_pair(&selector, &listener).await;
                    let config = pki
                        .server_config()
                        .handshake_timeout(long())
                        .build()
                        .unwrap();
                    tokio::time::timeout(HOUR, server.tls_server(&config))
                        .await
                        .map(|_| ())
                }
                _ => {
                    let long = long();
                    let listener = tcp_listener_with(&selector, |b| {
                        b.proxy_protocol(ProxyProtocol::Required)
                            .proxy_header_timeout(long)
                    })
                    .await;
                    let port = listener.port().unwrap();
                    let _silent = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    tokio::time::timeout(HOUR, listener.accept())
                        .await
                        .map(|_| ())
                }
            };
            assert!(waited.is_err(), "case {case}: ended within the hour");
            selector.close();
        });
    }
}

/// How a socket is made through the selector in
/// [`making_sockets_as_the_selectors_runtime_ends_fails_with_selector_closed`].
#[derive(Clone, Copy, Debug)]
enum Making {
    TcpBind,
    UnixBind,
    UdpBind,
    AdoptedListener,
    AdoptedStream,
    TcpConnect,
    UdpConnect,
}

/// Makes one socket the `making` way through `selector` (no tokio context: a plain thread).
fn make_one(
    selector: &SelectorManager,
    making: Making,
    dir: &std::path::Path,
    n: usize,
    peer: std::net::SocketAddr,
) -> net_sockets::Result<()> {
    let builder = net_sockets::a_socket(selector);
    match making {
        Making::TcpBind => net_tests::block_on(builder.tcp().bind(("127.0.0.1", 0))).map(drop),
        Making::UnixBind => {
            let path = dir.join(format!("{n}.sock"));
            net_tests::block_on(
                builder
                    .tcp()
                    .bind(net_sockets::UnixSocketAddress::new(path)),
            )
            .map(drop)
        }
        Making::UdpBind => net_tests::block_on(builder.udp().bind(("127.0.0.1", 0))).map(drop),
        Making::AdoptedListener => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            builder.tcp().from_std(listener).map(drop)
        }
        Making::AdoptedStream => {
            let (one, _other) = std::os::unix::net::UnixStream::pair().unwrap();
            net_sockets::Socket::from_std(selector, one).map(drop)
        }
        // To a port that refuses (nothing listens there, held by `peer`): each connect fails
        // with `ConnectionRefused`, which goes on, until the selector closes.
        Making::TcpConnect => match net_tests::block_on(builder.tcp().connect(peer)) {
            Err(net_sockets::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Ok(())
            }
            made => made.map(drop),
        },
        Making::UdpConnect => net_tests::block_on(builder.udp().connect(peer)).map(drop),
    }
}

/// Sockets made (bound, adopted, connected) on a plain thread through a `SelectorManager::new()`
/// selector while its runtime ends on another thread: each either succeeds or fails with
/// `SelectorClosed`, as the docs of `bind` and `from_std` say. The end of the runtime closes
/// the selector first, then shuts its I/O driver down; a socket whose check of the close came
/// just before, and whose registration with the driver just after, failed with tokio's own
/// error instead (`Io`, kind `Other`: "A Tokio 1.x context was found, but it is being
/// shutdown"), in 48 of the 280 rounds (TCP and Unix binds, UDP binds and connects, both
/// adoptions; the TCP connect maps it already).
#[test]
fn making_sockets_as_the_selectors_runtime_ends_fails_with_selector_closed() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let dir = net_tests::TempDir::new("runtime-end-binds");
    let kinds = [
        Making::TcpBind,
        Making::UnixBind,
        Making::UdpBind,
        Making::AdoptedListener,
        Making::AdoptedStream,
        Making::TcpConnect,
        Making::UdpConnect,
    ];
    let refusing = net_tests::loopback::RefusingPort::new();
    let mut wrong = Vec::new();
    for round in 0..280 {
        let making = kinds[round % kinds.len()];
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let selector = runtime.block_on(async { SelectorManager::new() });
        let started = Arc::new(AtomicBool::new(false));
        let maker = std::thread::spawn({
            let (selector, started) = (selector.clone(), started.clone());
            let dir = dir.path().join(format!("{round}"));
            let peer = refusing.address();
            std::fs::create_dir(&dir).unwrap();
            move || {
                let deadline = std::time::Instant::now() + HANG_LIMIT;
                let mut n = 0;
                loop {
                    let made = make_one(&selector, making, &dir, n, peer);
                    started.store(true, Ordering::Release);
                    n += 1;
                    match made {
                        Ok(()) if std::time::Instant::now() < deadline => {}
                        Ok(()) => panic!("{making:?}: the selector never closed"),
                        Err(e) => return e,
                    }
                }
            }
        });
        // The end of the runtime comes while sockets are being made, at a varying point.
        let wait_start = std::time::Instant::now();
        while !started.load(Ordering::Acquire) && wait_start.elapsed() < HANG_LIMIT {
            std::thread::yield_now();
        }
        std::thread::sleep(Duration::from_micros(50 * (round as u64 % 9)));
        runtime.shutdown_timeout(HANG_LIMIT);
        let error = maker.join().expect("the thread making sockets panicked");
        if !matches!(error, net_sockets::Error::SelectorClosed) {
            wrong.push(format!("round {round}, {making:?}: {error:?}"));
        }
    }
    assert!(wrong.is_empty(), "{} wrong errors: {wrong:#?}", wrong.len());
}

/// A server on a `LocalSet` of a current-thread runtime (its connections served by
/// `spawn_local` tasks, as code with `!Send` state does), and a client on the same thread:
/// lines go both ways, over TLS too, and the end of the runtime closes the selector.
#[test]
fn a_server_on_a_local_set_serves_plain_and_tls() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    let selector = local.block_on(&runtime, async {
        let pki = Pki::generate();
        let selector = SelectorManager::new();
        let server_config = pki.server_config().build().unwrap();
        for tls in [false, true] {
            let listener = tcp_listener_with(&selector, |b| b).await;
            let port = listener.port().unwrap();
            let served = tokio::task::spawn_local({
                let server_config = server_config.clone();
                async move {
                    let socket = listener.accept().await.unwrap();
                    // `!Send` state held across the awaits.
                    let seen = std::rc::Rc::new(std::cell::Cell::new(0));
                    let (mut input, mut output) = if tls {
                        let mut tls = socket.tls_server(&server_config).await.unwrap();
                        (
                            tls.open_read_channel().unwrap(),
                            tls.open_write_channel(true).unwrap(),
                        )
                    } else {
                        let mut socket = socket;
                        (
                            socket.open_read_channel().unwrap(),
                            socket.open_write_channel(true).unwrap(),
                        )
                    };
                    while let Some(line) = input.read_line(64, LineEnding::Default).await.unwrap() {
                        seen.set(seen.get() + 1);
                        output
                            .write_string_utf8(&format!("{line}!\n"))
                            .await
                            .unwrap();
                    }
                    seen.get()
                }
            });
            let socket = net_tests::loopback::connect(&selector, ("localhost", port)).await;
            let (mut input, mut output) = if tls {
                let client_config = pki.client_config().build().unwrap();
                let mut tls = socket.tls(client_config).await.unwrap();
                (
                    tls.open_read_channel().unwrap(),
                    tls.open_write_channel(true).unwrap(),
                )
            } else {
                let mut socket = socket;
                (
                    socket.open_read_channel().unwrap(),
                    socket.open_write_channel(true).unwrap(),
                )
            };
            for n in 0..3 {
                output.write_string_utf8(&format!("{n}\n")).await.unwrap();
                let back = net_tests::within(input.read_line(64, LineEnding::Default)).await;
                assert_eq!(back.unwrap().as_deref(), Some(format!("{n}!").as_str()));
            }
            output.flush_and_close().await.unwrap();
            assert_eq!(net_tests::within(served).await.unwrap(), 3, "tls {tls}");
        }
        selector
    });
    assert!(!selector.is_closed());
    drop(local);
    drop(runtime);
    assert!(selector.is_closed());
}

/// Blocking code around sockets on a multi-thread runtime: a read driven by `Handle::block_on`
/// inside `block_in_place`, and the selector closed from `spawn_blocking` while a read waits
/// in another task, which then fails with `SelectorClosed`.
#[test]
fn block_in_place_and_spawn_blocking_around_socket_calls() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let (mut client, mut server) = connected_pair(&selector, &listener).await;
        let mut output = client.open_write_channel(true).unwrap();
        let mut input = server.open_read_channel().unwrap();
        output.write_string_utf8("hello\n").await.unwrap();
        let line = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(net_tests::within(input.read_line(64, LineEnding::Default)))
        });
        assert_eq!(line.unwrap().as_deref(), Some("hello"));

        let waiting = tokio::spawn(async move { input.read_line(64, LineEnding::Default).await });
        let closing = selector.clone();
        net_tests::within(tokio::task::spawn_blocking(move || closing.close()))
            .await
            .unwrap();
        let read = net_tests::within(waiting).await.unwrap();
        assert!(
            matches!(
                read.map_err(net_sockets::Error::from),
                Err(net_sockets::Error::SelectorClosed)
            ),
            "the waiting read"
        );
    });
}
