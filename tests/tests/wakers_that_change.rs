//! Wakers that change between polls: a future polled with one waker, then with another (a
//! `select!` arm inside `join!`, `FuturesUnordered`, a future or a channel moved to another
//! task) wakes the waker of its LAST poll once its event comes (the contract of
//! `std::task`); the first waker may be woken too, or not.
//!
//! Each check polls the operation by hand with waker A (pending), then with waker B (pending),
//! only then makes its event happen (the peer sends, the peer reads so that room frees, a
//! connect arrives, the shutdown starts, the close comes), and waits, bounded, for B's wake:
//! plain TCP, Unix, TLS (both sides), UDP, `ByteChannel`'s pipe, the listener, the
//! connection's waits. Then the same with two runtime tasks in turn: a channel, and a pending
//! future, moved from one task to another.

use std::future::Future;
use std::io::Read as _;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use futures_core::Stream;
use net_io::{ByteChannel, ByteReadChannel, ByteWriteChannel, LineEnding};
use net_sockets::{Datagram, SelectorManager, ServerSocket, Socket, UnixSocketAddress, a_socket};
use net_tests::loopback::{Channels, connected_pair, tcp_listener, udp_socket};
use net_tests::pki::TestCa;
use net_tests::{TempDir, within};
use net_tls::{TlsExt, TlsSocket};

/// How long an event's wake-up may take on a loaded machine before the test calls it lost.
const WOKEN: Duration = Duration::from_secs(10);

/// A waker that counts its wakes.
struct Count(AtomicUsize);

impl Wake for Count {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A counting waker, and its count.
fn counting() -> (Waker, Arc<Count>) {
    let count = Arc::new(Count(AtomicUsize::new(0)));
    (Waker::from(Arc::clone(&count)), count)
}

/// Polls `future` with waker A, then with waker B (pending both times), then awaits `event`,
/// and returns once B was woken; panics when B is not woken within [`WOKEN`].
async fn woken_after_switch<F: Future>(
    what: &str,
    future: Pin<&mut F>,
    event: impl Future<Output = ()>,
) {
    woken_after_switch_within(WOKEN, what, future, event).await;
}

/// [`woken_after_switch`] with `limit` for the wake-up.
async fn woken_after_switch_within<F: Future>(
    limit: Duration,
    what: &str,
    mut future: Pin<&mut F>,
    event: impl Future<Output = ()>,
) {
    let (a, _) = counting();
    let (b, woken) = counting();
    // A fresh cooperative budget: the two polls wait for their event, not for a budget spent
    // by what this task did before (which would wake B at once).
    tokio::task::yield_now().await;
    assert!(
        future
            .as_mut()
            .poll(&mut Context::from_waker(&a))
            .is_pending(),
        "{what}: ready at the first poll"
    );
    assert!(
        future
            .as_mut()
            .poll(&mut Context::from_waker(&b))
            .is_pending(),
        "{what}: ready at the second poll"
    );
    // Only a wake after the event starts counts.
    let before = woken.0.load(Ordering::SeqCst);
    event.await;
    let deadline = Instant::now() + limit;
    while woken.0.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "{what}: the waker of the last poll was not woken within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// [`woken_after_switch`], then polls the future to its end (within the test kit's hang
/// limit) and returns its output.
async fn last_waker_woken<F: Future>(
    what: &str,
    mut future: Pin<&mut F>,
    event: impl Future<Output = ()>,
) -> F::Output {
    woken_after_switch(what, future.as_mut(), event).await;
    within(future).await
}

/// Every kind of read of `input` waits with the last waker for what `output` (the peer's
/// channel) sends.
async fn reads_wake_the_last_waker(
    kind: &str,
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
) {
    macro_rules! check {
        ($name:literal, $read:expr, $send:expr) => {{
            let what = format!("{kind}: {}", $name);
            let read = pin!($read);
            let send = async {
                output.write_fully($send).await.expect("the peer's write");
                output.flush().await.expect("the peer's flush");
            };
            let read = last_waker_woken(&what, read, send).await;
            read.expect(&what);
        }};
    }
    check!("read_u8", input.read_u8(), b"x");
    check!(
        "read_line",
        input.read_line(1024, LineEnding::Default),
        b"line\n"
    );
    check!("read_until", input.read_until(b"--", 1024), b"part--");
    check!("peek", input.peek(2), b"pk");
    input.discard_exact(2).await.expect("the peeked bytes");
    check!("read_u32", input.read_u32(), &[0, 0, 0, 4]);
    let mut dst = [0u8; 8];
    check!("read_available", input.read_available(&mut dst), b"some");
    check!("await_content", input.await_content(1), b"c");
    input.discard_exact(1).await.expect("the awaited byte");
    // The tokio traits.
    let mut dst = [0u8; 8];
    check!(
        "AsyncRead::read",
        tokio::io::AsyncReadExt::read(input, &mut dst),
        b"ar"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_reads_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let (mut client_in, mut client_out) = client.open_channels(false).unwrap();
    let (mut server_in, mut server_out) = server.open_channels(false).unwrap();
    reads_wake_the_last_waker("tcp server", &mut server_in, &mut client_out).await;
    reads_wake_the_last_waker("tcp client", &mut client_in, &mut server_out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_reads_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let dir = TempDir::new("wakers");
    let path = dir.join("wakers.sock");
    let listener = a_socket(&selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let mut client = within(
        a_socket(&selector)
            .tcp()
            .connect(UnixSocketAddress::new(&path)),
    )
    .await
    .unwrap();
    let mut server = within(listener.accept()).await.unwrap();
    let (mut client_in, mut client_out) = client.open_channels(false).unwrap();
    let (mut server_in, mut server_out) = server.open_channels(false).unwrap();
    reads_wake_the_last_waker("unix server", &mut server_in, &mut client_out).await;
    reads_wake_the_last_waker("unix client", &mut client_in, &mut server_out).await;
}

/// A TLS pair over loopback, (server side, client side).
async fn tls_pair(
    selector: &SelectorManager,
    listener: &ServerSocket,
    ca: &TestCa,
) -> (TlsSocket, TlsSocket) {
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let client_config = ca.client_config().build().unwrap();
    net_tests::tls::pair(selector, listener, &server_config, client_config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_reads_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("wakers that change");
    let (mut server, mut client) = tls_pair(&selector, &listener, &ca).await;
    let (mut client_in, mut client_out) = client.open_channels(false).unwrap();
    let (mut server_in, mut server_out) = server.open_channels(false).unwrap();
    reads_wake_the_last_waker("tls server", &mut server_in, &mut client_out).await;
    reads_wake_the_last_waker("tls client", &mut client_in, &mut server_out).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_flush_waits_with_the_waker_of_its_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut server, peer) = with_full_buffers(&listener).await;
    let mut output = server.open_write_channel(false).unwrap();
    output.write_fully(&[1u8; 4096]).await.unwrap();
    let flush = pin!(output.flush());
    // The peer reads (on a thread of its own) until told to stop: room frees.
    let stop = Arc::new(AtomicBool::new(false));
    let mut draining = None;
    let drain = async {
        draining = Some(drain_until(peer, Arc::clone(&stop)));
    };
    last_waker_woken("tcp flush", flush, drain)
        .await
        .expect("the flush");
    stop.store(true, Ordering::SeqCst);
    draining.unwrap().join().unwrap();
}

/// A connection accepted by `listener` whose peer (a blocking std stream) has read nothing,
/// with the kernel's buffers on both sides full (filled through the socket itself), so that any
/// flush waits until the peer reads.
async fn with_full_buffers(listener: &ServerSocket) -> (Socket, std::net::TcpStream) {
    let port = listener.port().unwrap();
    let peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let server = within(listener.accept()).await.unwrap();
    (fill(server), peer)
}

/// Reads from `peer` on a thread of its own until `stop` (or the end of stream, or an error).
fn drain_until(
    peer: std::net::TcpStream,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<std::net::TcpStream> {
    std::thread::spawn(move || {
        let mut peer = peer;
        peer.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let until = Instant::now() + 3 * WOKEN;
        while !stop.load(Ordering::SeqCst) && Instant::now() < until {
            match peer.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => break,
            }
        }
        peer
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipe_waits_wake_the_waker_of_their_last_poll() {
    let (mut output, mut input) = ByteChannel::new(false);
    reads_wake_the_last_waker("pipe", &mut input, &mut output).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_receive_wakes_the_waker_of_its_last_poll() {
    let selector = SelectorManager::new();
    let socket = udp_socket(&selector).await;
    let peer = udp_socket(&selector).await;
    let receive = pin!(socket.receive());
    let send = async {
        let datagram = Datagram::new(&b"ping"[..], socket.local_address()).unwrap();
        peer.send(datagram).await.expect("the peer's send");
    };
    let got = last_waker_woken("udp receive", receive, send)
        .await
        .expect("the receive");
    assert_eq!(&got.packet[..], b"ping");
    let mut incoming = socket.incoming();
    let next = pin!(next_of(&mut incoming));
    let send = async {
        let datagram = Datagram::new(&b"pong"[..], socket.local_address()).unwrap();
        peer.send(datagram).await.expect("the peer's send");
    };
    let got = last_waker_woken("udp incoming", next, send).await;
    assert_eq!(&got.unwrap().unwrap().packet[..], b"pong");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepts_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let accept = pin!(listener.accept());
    let address = listener.local_address();
    let mut client = None;
    let connect = async {
        client = Some(net_tests::loopback::connect(&selector, address.clone()).await);
    };
    last_waker_woken("accept", accept, connect)
        .await
        .expect("the accept");
    let mut incoming = listener.incoming();
    let next = pin!(next_of(&mut incoming));
    let connect = async {
        client = Some(net_tests::loopback::connect(&selector, address.clone()).await);
    };
    let accepted = last_waker_woken("incoming", next, connect).await;
    accepted.unwrap().expect("the accept");
    drop(client);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_waits_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    // The listener's graceful shutdown, seen by the connection it accepted.
    let requested = pin!(server.shutdown_requested());
    let shutdown = async {
        tokio::spawn({
            let listener = listener;
            async move { listener.shutdown(Duration::from_secs(30)).await }
        });
    };
    last_waker_woken("shutdown_requested", requested, shutdown).await;
    // The close, seen by `await_closed`.
    let closed = pin!(client.await_closed());
    last_waker_woken("await_closed", closed, async { client.close() }).await;
    server.close();
}

/// A connection to `localhost` (the name the test certificates carry) and its accepted end.
async fn localhost_pair(selector: &SelectorManager, listener: &ServerSocket) -> (Socket, Socket) {
    let port = listener.port().unwrap();
    let client = net_tests::loopback::connect(selector, ("localhost", port)).await;
    let server = within(listener.accept()).await.unwrap();
    (client, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_handshakes_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("wakers that change: handshakes");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let client_config = ca.client_config().build().unwrap();
    // The server's handshake waits for the ClientHello.
    let (client, server) = localhost_pair(&selector, &listener).await;
    let handshake = pin!(server.tls_server(&server_config));
    let mut client_side = None;
    let client_hello = async {
        let config = client_config.clone();
        client_side = Some(tokio::spawn(async move { client.tls(config).await }));
    };
    let server_side = last_waker_woken("the server's handshake", handshake, client_hello)
        .await
        .expect("the server's handshake");
    within(client_side.unwrap())
        .await
        .unwrap()
        .expect("the client's handshake");
    drop(server_side);
    // The client's handshake waits for the ServerHello.
    let (client, server) = localhost_pair(&selector, &listener).await;
    let handshake = pin!(client.tls(client_config));
    let mut server_side = None;
    let server_hello = async {
        let config = server_config.clone();
        server_side = Some(tokio::spawn(
            async move { server.tls_server(&config).await },
        ));
    };
    last_waker_woken("the client's handshake", handshake, server_hello)
        .await
        .expect("the client's handshake");
    within(server_side.unwrap())
        .await
        .unwrap()
        .expect("the server's handshake");
}

/// Polls `future` once in a task of its own (pending), and gives it back.
async fn poll_once_in_a_task<F: Future + Send + Unpin + 'static>(mut future: F) -> F {
    let polled = tokio::spawn(async move {
        std::future::poll_fn(|cx| {
            assert!(Pin::new(&mut future).poll(cx).is_pending(), "ready at once");
            Poll::Ready(())
        })
        .await;
        // In an `Option`: the task gives the future back, it does not run it.
        Some(future)
    });
    polled.await.unwrap().unwrap()
}

/// A future that polls `future` and tells `polled` at its first poll.
async fn telling<F: Future>(future: F, polled: tokio::sync::oneshot::Sender<()>) -> F::Output {
    let mut future = pin!(future);
    let mut polled = Some(polled);
    std::future::poll_fn(|cx| {
        let poll = future.as_mut().poll(cx);
        if let Some(tell) = polled.take() {
            let _ = tell.send(());
        }
        poll
    })
    .await
}

/// A channel, and a pending read of it, moved from one task to another: the second task's
/// wait is woken by what comes after it polled.
async fn moved_between_tasks(
    kind: &str,
    mut input: ByteReadChannel,
    output: &mut ByteWriteChannel,
) {
    // The channel: a read polled in task 1 (then dropped), another read in task 2.
    let input_back = tokio::spawn(async move {
        {
            let mut read = pin!(input.read_u8());
            std::future::poll_fn(|cx| {
                assert!(read.as_mut().poll(cx).is_pending(), "ready at once");
                Poll::Ready(())
            })
            .await;
        }
        input
    })
    .await
    .unwrap();
    let (tell, polled) = tokio::sync::oneshot::channel();
    let task2 = tokio::spawn(async move {
        let mut input = input_back;
        let byte = telling(input.read_u8(), tell).await;
        (input, byte)
    });
    polled.await.unwrap();
    output.write_fully(b"m").await.unwrap();
    output.flush().await.unwrap();
    let (input, byte) = tokio::time::timeout(WOKEN, task2)
        .await
        .unwrap_or_else(|_| panic!("{kind}: the moved channel's read was not woken"))
        .unwrap();
    assert_eq!(byte.unwrap(), b'm');
    // A pending read future itself, moved: polled in task 1, awaited in task 2.
    let read = Box::pin(async move {
        let mut input = input;
        input.read_u8().await
    });
    let read = poll_once_in_a_task(read).await;
    let (tell, polled) = tokio::sync::oneshot::channel();
    let task2 = tokio::spawn(telling(read, tell));
    polled.await.unwrap();
    output.write_fully(b"n").await.unwrap();
    output.flush().await.unwrap();
    let byte = tokio::time::timeout(WOKEN, task2)
        .await
        .unwrap_or_else(|_| panic!("{kind}: the moved read was not woken"))
        .unwrap();
    assert_eq!(byte.unwrap(), b'n');
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_moved_between_tasks_wake_the_last() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let (_client_in, mut client_out) = client.open_channels(false).unwrap();
    let (server_in, _server_out) = server.open_channels(false).unwrap();
    moved_between_tasks("tcp", server_in, &mut client_out).await;

    let ca = TestCa::new("wakers that change: moved");
    let (mut server, mut client) = tls_pair(&selector, &listener, &ca).await;
    let (client_in, _client_out) = client.open_channels(false).unwrap();
    let (_server_in, mut server_out) = server.open_channels(false).unwrap();
    moved_between_tasks("tls client", client_in, &mut server_out).await;

    let (mut output, input) = ByteChannel::new(false);
    moved_between_tasks("pipe", input, &mut output).await;
}

/// The next item of `stream`.
fn next_of<S: Stream + Unpin>(stream: &mut S) -> impl Future<Output = Option<S::Item>> + '_ {
    std::future::poll_fn(move |cx| Pin::new(&mut *stream).poll_next(cx))
}

/// A write of `n` bytes and its flush through `output` waits for room with the last waker:
/// the peer's reads (of `input`, in a task of its own) free it.
async fn writes_wake_the_last_waker(
    kind: &str,
    output: &mut ByteWriteChannel,
    input: ByteReadChannel,
    n: usize,
) {
    let data = vec![5u8; n];
    let write = pin!(async {
        output.write_fully(&data).await?;
        output.flush().await
    });
    let mut reader = None;
    let read = async {
        reader = Some(tokio::spawn(async move {
            let mut input = input;
            input.discard_exact(n as u64).await.map(|()| input)
        }));
    };
    let what = format!("{kind}: write and flush");
    last_waker_woken(&what, write, read).await.expect(&what);
    within(reader.unwrap())
        .await
        .unwrap()
        .expect("the peer's reads");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_wake_the_waker_of_their_last_poll() {
    const N: usize = 16 << 20;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let (_client_in, mut client_out) = client.open_channels(false).unwrap();
    let (server_in, _server_out) = server.open_channels(false).unwrap();
    writes_wake_the_last_waker("tcp", &mut client_out, server_in, N).await;

    let ca = TestCa::new("wakers that change: writes");
    let (mut server, mut client) = tls_pair(&selector, &listener, &ca).await;
    let (client_in, mut client_out) = client.open_channels(false).unwrap();
    let (server_in, mut server_out) = server.open_channels(false).unwrap();
    writes_wake_the_last_waker("tls client", &mut client_out, server_in, N).await;
    writes_wake_the_last_waker("tls server", &mut server_out, client_in, N).await;

    let (mut output, input) = ByteChannel::new(false);
    writes_wake_the_last_waker("pipe", &mut output, input, N).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let address = listener.local_address();
    for tls in [false, true] {
        let client = within(
            a_socket(&selector)
                .tcp()
                .socket_timeout(Duration::from_millis(300))
                .connect(address.clone()),
        )
        .await
        .unwrap();
        let server = within(listener.accept()).await.unwrap();
        let (mut input, _peer) = if tls {
            let ca = TestCa::new("wakers that change: timeouts");
            let server_config = ca.server(&["127.0.0.1"]).server_config().build().unwrap();
            let client_config = ca.client_config().build().unwrap();
            let (client, server) =
                tokio::join!(client.tls(client_config), server.tls_server(&server_config));
            let mut client = client.unwrap();
            (
                client.open_read_channel().unwrap(),
                Box::new(server.unwrap()) as Box<dyn std::any::Any + Send>,
            )
        } else {
            let mut client = client;
            (
                client.open_read_channel().unwrap(),
                Box::new(server) as Box<dyn std::any::Any + Send>,
            )
        };
        let read = pin!(input.read_u8());
        // The event is the timeout itself.
        let e = last_waker_woken("a read's socket_timeout", read, async {})
            .await
            .expect_err("the read's timeout");
        assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_and_shutdowns_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    // `close_gracefully` waits for the peer's end.
    let (client, server) = connected_pair(&selector, &listener).await;
    let server = server.connection().unwrap();
    let closing = pin!(server.close_gracefully(Duration::from_secs(60)));
    last_waker_woken("close_gracefully", closing, async { client.close() })
        .await
        .expect("the graceful close");
    // A copy waits for input.
    let (mut client, mut server) = connected_pair(&selector, &listener).await;
    let (_client_in, mut client_out) = client.open_channels(false).unwrap();
    let (mut server_in, _server_out) = server.open_channels(false).unwrap();
    let (mut pipe_out, mut pipe_in) = ByteChannel::new(false);
    let copy = pin!(server_in.copy_to(&mut pipe_out, 3));
    let send = async {
        client_out.write_fully(b"abc").await.unwrap();
        client_out.flush().await.unwrap();
    };
    assert_eq!(last_waker_woken("copy_to", copy, send).await.unwrap(), 3);
    assert_eq!(&pipe_in.read_bytes(3).await.unwrap()[..], b"abc");
    // The listener's shutdown waits for its connection to close.
    let shutdown = pin!(listener.shutdown(Duration::from_secs(60)));
    let report = last_waker_woken("ServerSocket::shutdown", shutdown, async {
        server.close();
    })
    .await;
    assert_eq!(report.finished, 1, "{report:?}");
    drop(client);
    // The selector's shutdown waits for its connections to close (a selector of its own).
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let shutdown = pin!(selector.shutdown(Duration::from_secs(60)));
    // Both ends are the selector's connections.
    let report = last_waker_woken("SelectorManager::shutdown", shutdown, async {
        server.close();
        client.close();
    })
    .await;
    assert_eq!(report.finished, 2, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_streams_wake_the_waker_of_their_last_poll() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let mut client = client.into_stream().unwrap();
    let mut server = server.into_stream().unwrap();
    let mut dst = [0u8; 4];
    let read = pin!(server.read(&mut dst));
    last_waker_woken("SocketStream read", read, async {
        client.write_all(b"ss").await.unwrap();
    })
    .await
    .expect("the read");
    let ca = TestCa::new("wakers that change: streams");
    let (server, client) = tls_pair(&selector, &listener, &ca).await;
    let mut client = client.into_stream().unwrap();
    let mut server = server.into_stream().unwrap();
    let mut dst = [0u8; 4];
    let read = pin!(server.read(&mut dst));
    last_waker_woken("TlsStream read", read, async {
        client.write_all(b"ts").await.unwrap();
        client.flush().await.unwrap();
    })
    .await
    .expect("the read");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_wake_the_waker_of_their_last_poll() {
    const SHORT: Duration = Duration::from_millis(300);
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("wakers that change: timers");
    // A server's handshake with a client that sends nothing: its timeout.
    let server_config = ca
        .server(&["localhost"])
        .server_config()
        .handshake_timeout(SHORT)
        .build()
        .unwrap();
    let (client, server) = connected_pair(&selector, &listener).await;
    let handshake = pin!(server.tls_server(&server_config));
    let e = last_waker_woken("a handshake's timeout", handshake, async {})
        .await
        .expect_err("the handshake's timeout");
    assert!(matches!(e, net_tls::Error::HandshakeTimeout(_)), "{e:?}");
    drop(client);
    // `close_gracefully` with a peer that never ends: its `wait`.
    let (client, server) = connected_pair(&selector, &listener).await;
    let server = server.connection().unwrap();
    let closing = pin!(server.close_gracefully(SHORT));
    last_waker_woken("close_gracefully's wait", closing, async {})
        .await
        .expect("the graceful close, cut by its wait");
    drop(client);
    // A listener's shutdown with a connection that stays open: its grace period.
    let (client, server) = connected_pair(&selector, &listener).await;
    let shutdown = pin!(listener.shutdown(SHORT));
    let report = last_waker_woken("ServerSocket::shutdown's grace", shutdown, async {}).await;
    assert_eq!(report.cut, 1, "{report:?}");
    drop((client, server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_timeouts_wake_the_waker_of_their_last_poll() {
    let selector = SelectorManager::new();
    let peer_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let client = within(
        a_socket(&selector)
            .tcp()
            .socket_timeout(Duration::from_millis(300))
            .connect(peer_listener.local_addr().unwrap()),
    )
    .await
    .unwrap();
    let (_peer, _) = peer_listener.accept().unwrap();
    let mut client = fill(client);
    let mut output = client.open_write_channel(false).unwrap();
    output.write_fully(&[1u8; 4096]).await.unwrap();
    let flush = pin!(output.flush());
    let e = last_waker_woken("a flush's socket_timeout", flush, async {})
        .await
        .expect_err("the flush's timeout");
    assert!(matches!(e, net_io::Error::Timeout), "{e:?}");
}

/// `socket` with the kernel's send buffer (and its peer's receive buffer) full.
fn fill(socket: Socket) -> Socket {
    let chunk = vec![7u8; 64 * 1024];
    socket
        .with_sock_ref(|sock| {
            for _ in 0..4096 {
                if sock.send(&chunk).is_err() {
                    break;
                }
            }
            Ok(())
        })
        .unwrap();
    socket
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_flush_waits_with_the_waker_of_its_last_poll() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let ca = TestCa::new("wakers that change: starttls");
    let server_config = ca.server(&["localhost"]).server_config().build().unwrap();
    let (server, peer) = with_full_buffers(&listener).await;
    let mut connection = server.connection().unwrap();
    connection
        .output
        .write_fully(b"220 go ahead\r\n")
        .await
        .unwrap();
    let upgrade = pin!(connection.tls_server(&server_config));
    let stop = Arc::new(AtomicBool::new(false));
    let mut draining = None;
    let drain = async {
        draining = Some(drain_until(peer, Arc::clone(&stop)));
    };
    // Woken once the flush can go on (the handshake then waits for a ClientHello).
    woken_after_switch("STARTTLS's flush", upgrade, drain).await;
    stop.store(true, Ordering::SeqCst);
    draining.unwrap().join().unwrap();
}

/// The harness itself: a future that keeps the waker of its first poll (the defect these tests
/// look for) fails it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[should_panic(expected = "the waker of the last poll was not woken")]
async fn the_harness_catches_a_future_that_keeps_its_first_waker() {
    let first: Arc<std::sync::Mutex<Option<Waker>>> = Arc::default();
    let kept = Arc::clone(&first);
    let keeps_the_first = pin!(std::future::poll_fn(move |cx| {
        kept.lock()
            .unwrap()
            .get_or_insert_with(|| cx.waker().clone());
        Poll::<()>::Pending
    }));
    let event = async {
        if let Some(waker) = first.lock().unwrap().take() {
            waker.wake();
        }
    };
    // It fails at its limit: a short one, this failure being certain.
    woken_after_switch_within(
        Duration::from_millis(200),
        "a future that keeps its first waker",
        keeps_the_first,
        event,
    )
    .await;
}

/// A read of `input` and a write to `output` (over a socket whose buffers the peer does not
/// drain) of one connection wait with their last wakers for the close `close` makes.
async fn waits_end_with_the_close(
    kind: &str,
    input: &mut ByteReadChannel,
    output: &mut ByteWriteChannel,
    close: impl FnOnce(),
) {
    let data = vec![3u8; 16 << 20];
    let read = pin!(input.read_u8());
    let write = pin!(async {
        output.write_fully(&data).await?;
        output.flush().await
    });
    let mut both = pin!(async { tokio::join!(read, write) });
    let what = format!("{kind}: a read and a write, then the close");
    let (read, write) = last_waker_woken(&what, both.as_mut(), async { close() }).await;
    read.expect_err("the read after the close");
    write.expect_err("the write after the close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closes_wake_the_waker_of_the_last_poll_of_pending_operations() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (mut client, _server) = connected_pair(&selector, &listener).await;
    let (mut input, mut output) = client.open_channels(false).unwrap();
    waits_end_with_the_close("tcp", &mut input, &mut output, || client.close()).await;

    let ca = TestCa::new("wakers that change: closes");
    let (_server, mut client) = tls_pair(&selector, &listener, &ca).await;
    let (mut input, mut output) = client.open_channels(false).unwrap();
    waits_end_with_the_close("tls", &mut input, &mut output, || client.close()).await;

    // The selector's close, for a connection, a datagram socket and a listener.
    let other = SelectorManager::new();
    let listener = tcp_listener(&other).await;
    let (mut client, _server) = connected_pair(&other, &listener).await;
    let (mut input, mut output) = client.open_channels(false).unwrap();
    let udp = udp_socket(&other).await;
    let data = vec![3u8; 16 << 20];
    let read = pin!(input.read_u8());
    let write = pin!(async {
        output.write_fully(&data).await?;
        output.flush().await
    });
    let receive = pin!(udp.receive());
    let accept = pin!(listener.accept());
    let all = pin!(async { tokio::join!(read, write, receive, accept) });
    let what = "a read, a write, a receive and an accept, then the selector's close";
    let (read, write, received, accepted) =
        last_waker_woken(what, all, async { other.close() }).await;
    read.expect_err("the read after the selector's close");
    write.expect_err("the write after the selector's close");
    received.expect_err("the receive after the selector's close");
    accepted.expect_err("the accept after the selector's close");
}

/// A layer's handshake (here a read of its raw stream, bounded by its timer, as a TLS
/// handshake is) ends with the selector's close: the close wakes the read's last waker (not
/// the timer, as documented: the timer reports the close when polled, not at its deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_layers_handshake_wakes_the_waker_of_its_last_poll_at_the_selectors_close() {
    use tokio::io::AsyncReadExt as _;
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (_client, server) = connected_pair(&selector, &listener).await;
    let connection = server.connection().unwrap();
    let upgrade = pin!(connection.upgrade(
        Duration::from_secs(600),
        || net_sockets::Error::Timeout,
        |e| e,
        |mut raw, timer| async move {
            let mut byte = [0u8; 1];
            let read = tokio::select! {
                biased;
                read = raw.read(&mut byte) => read.map_err(net_sockets::Error::from),
                fired = timer => fired.map(|()| 0),
            };
            // The timer reports the close at once, not at its deadline.
            let mut late = pin!(raw.sleep(Duration::from_secs(600)));
            let polled = late.as_mut().poll(&mut Context::from_waker(Waker::noop()));
            assert!(
                matches!(polled, Poll::Ready(Err(net_sockets::Error::SelectorClosed))),
                "{polled:?}"
            );
            read.map(|_| net_sockets::Plain::default())
        },
    ));
    let e = last_waker_woken("a layer's handshake", upgrade, async { selector.close() })
        .await
        .expect_err("the selector's close");
    assert!(matches!(e, net_sockets::Error::SelectorClosed), "{e:?}");
}

/// The selector's graceful shutdown wakes the last waker of `shutdown_requested` on an
/// accepted connection (its listener's signal, a child of the selector's) and on a connected
/// one (the selector's own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selectors_shutdown_wakes_the_last_waker_of_shutdown_requested() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (client, server) = connected_pair(&selector, &listener).await;
    let requested =
        pin!(async { tokio::join!(server.shutdown_requested(), client.shutdown_requested()) });
    let mut shutdown = None;
    let start = async {
        let selector = selector.clone();
        shutdown = Some(tokio::spawn(async move {
            selector.shutdown(Duration::from_secs(60)).await
        }));
    };
    last_waker_woken("shutdown_requested, the selector's", requested, start).await;
    client.close();
    server.close();
    let report = within(shutdown.unwrap()).await.unwrap();
    assert_eq!(report.finished, 2, "{report:?}");
}
