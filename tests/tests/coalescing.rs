//! Flush coalescing (SPEC §4.4), counted in sends: the socket emits a `trace` event named
//! `sent` for every send system call, and this test binary counts them with a subscriber of
//! its own (each test that counts them runs on a current-thread runtime in its own thread, so a
//! thread-local subscriber sees exactly its own sends).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, Socket, a_socket};
use net_tests::fault::raw_peer_of;
use net_tests::greeting::serve_seed;
use net_tests::loopback::tcp_listener;
use net_tests::sends::Sends;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Runs `test` on a current-thread runtime with `sends` counting.
fn counting(test: impl std::future::Future<Output = ()>, sends: &Sends) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    tracing::subscriber::with_default(sends.clone(), || runtime.block_on(test));
}

async fn read_exactly(stream: &mut TcpStream, text: &str) {
    let mut buf = vec![0; text.len()];
    within(stream.read_exact(&mut buf)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), text);
}

/// Sends one burst of 16 pipelined requests to the seed's server on a listener `configure`d
/// from the plain builder; returns how many sends its 16 answers took.
fn sends_for_a_burst_of_sixteen(
    configure: fn(net_sockets::TcpSocketBuilder) -> net_sockets::TcpSocketBuilder,
) -> usize {
    let sends = Sends::default();
    let counted = sends.clone();
    let taken = Arc::new(AtomicUsize::new(0));
    let result = Arc::clone(&taken);
    counting(
        async move {
            let selector = SelectorManager::new();
            let server = configure(a_socket(&selector).tcp())
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let (mut client, accepted) = raw_peer_of(&server).await;
            let serving = tokio::spawn(serve_seed(accepted));
            read_exactly(&mut client, "Please enter your name\n").await;
            let before = counted.count();
            let burst: String = (0..16).map(|i| format!("n{i:02}\n")).collect();
            client.write_all(burst.as_bytes()).await.unwrap();
            let answers: String = (0..16).map(|i| format!("Hello, n{i:02}!\n")).collect();
            read_exactly(&mut client, &answers).await;
            result.store(counted.count() - before, Ordering::SeqCst);
            drop(client);
            within(serving).await.unwrap();
        },
        &sends,
    );
    taken.load(Ordering::SeqCst)
}

#[test]
fn a_burst_of_sixteen_requests_is_answered_with_one_send() {
    assert_eq!(sends_for_a_burst_of_sixteen(|b| b), 1);
}

#[test]
fn without_coalescing_each_answer_is_a_send() {
    assert_eq!(
        sends_for_a_burst_of_sixteen(|b| b.coalesce_flushes(false)),
        16
    );
}

/// A lone request's answer leaves when it is written, not when the server next reads.
#[test]
fn a_lone_request_is_answered_before_the_server_waits_again() {
    let sends = Sends::default();
    counting(
        async {
            let selector = SelectorManager::new();
            let server = tcp_listener(&selector).await;
            let (mut client, mut socket) = raw_peer_of(&server).await;
            let serving = tokio::spawn(async move {
                let mut input = socket.open_read_channel().unwrap();
                let mut output = socket.open_write_channel(true).unwrap();
                let name = input
                    .read_line(1024, LineEnding::Default)
                    .await
                    .unwrap()
                    .unwrap();
                output
                    .write_string_utf8(&format!("Hello, {name}!\n"))
                    .await
                    .unwrap();
                // Busy elsewhere for a long while before reading again.
                tokio::time::sleep(Duration::from_secs(30)).await;
                drop(input);
            });
            client.write_all(b"Alice\n").await.unwrap();
            let mut answer = [0; 14];
            tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut answer))
                .await
                .expect("the answer waited for the server's next read")
                .unwrap();
            assert_eq!(&answer, b"Hello, Alice!\n");
            serving.abort();
        },
        &sends,
    );
}

/// A socket that only writes flushes every auto-flushed write at once.
#[test]
fn a_writer_without_reads_sends_each_write_at_once() {
    let sends = Sends::default();
    let counted = sends.clone();
    counting(
        async move {
            let selector = SelectorManager::new();
            let server = tcp_listener(&selector).await;
            let (mut client, mut socket) = raw_peer_of(&server).await;
            let mut output = socket.open_write_channel(true).unwrap();
            for i in 0..5 {
                let before = counted.count();
                output
                    .write_string_utf8(&format!("tick {i}\n"))
                    .await
                    .unwrap();
                assert_eq!(counted.count() - before, 1);
                read_exactly(&mut client, &format!("tick {i}\n")).await;
            }
        },
        &sends,
    );
}

/// TLS coalesces too: the records of a burst's answers leave in one send.
#[test]
fn a_tls_burst_is_answered_with_one_send() {
    use net_tls::TlsExt;
    let sends = Sends::default();
    let counted = sends.clone();
    counting(
        async move {
            let selector = SelectorManager::new();
            let pki = net_tests::pki::Pki::generate();
            let server_config = pki.server_config().build().unwrap();
            let server = tcp_listener(&selector).await;
            let port = server.port().unwrap();
            let serving = tokio::spawn(async move {
                let socket = server.accept().await.unwrap();
                let mut tls = socket.tls_server(&server_config).await.unwrap();
                let mut input = tls.open_read_channel().unwrap();
                let mut output = tls.open_write_channel(true).unwrap();
                while let Ok(Some(name)) = input.read_line(1024, LineEnding::Default).await {
                    output
                        .write_string_utf8(&format!("Hello, {name}!\n"))
                        .await
                        .unwrap();
                }
            });
            let client = a_socket(&selector)
                .tcp()
                .connect(("localhost", port))
                .await
                .unwrap();
            let mut tls = within(client.tls(pki.client_config().build().unwrap()))
                .await
                .unwrap();
            let mut connection_input = tls.open_read_channel().unwrap();
            let mut connection_output = tls.open_write_channel(false).unwrap();
            // Let the server finish its side of the handshake first.
            connection_output.write_string_utf8("warm\n").await.unwrap();
            connection_output.flush().await.unwrap();
            let warm = within(connection_input.read_line(64, LineEnding::Default))
                .await
                .unwrap();
            assert_eq!(warm.as_deref(), Some("Hello, warm!"));
            let before = counted.count();
            for i in 0..16 {
                connection_output
                    .write_string_utf8(&format!("n{i:02}\n"))
                    .await
                    .unwrap();
            }
            connection_output.flush().await.unwrap();
            let client_sends = counted.count() - before;
            for i in 0..16 {
                let line = within(connection_input.read_line(64, LineEnding::Default))
                    .await
                    .unwrap();
                assert_eq!(line, Some(format!("Hello, n{i:02}!")));
            }
            // The client's own flush was one send (its writes were buffered); the server's
            // sixteen answers one more.
            assert_eq!(client_sends, 1);
            assert_eq!(counted.count() - before, 2, "sends for one TLS burst of 16");
            drop((tls, connection_input, connection_output));
            within(serving).await.unwrap();
        },
        &sends,
    );
}

/// Answers held back while the client pipelines, more than the socket takes when the reader
/// waits: the rest leaves as the socket drains, in order, without the reader waiting for it.
#[test]
fn held_back_answers_the_socket_cannot_take_at_once_still_arrive_in_order() {
    let sends = Sends::default();
    counting(
        async {
            let selector = SelectorManager::new();
            let server = a_socket(&selector)
                .tcp()
                .send_buffer_size(4096)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let port = server.port().unwrap();
            let raw =
                socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
            raw.set_recv_buffer_size(4096).unwrap();
            raw.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
                .unwrap();
            raw.set_nonblocking(true).unwrap();
            let mut client = TcpStream::from_std(raw.into()).unwrap();
            let accepted = within(server.accept()).await.unwrap();
            let serving = tokio::spawn(serve_seed(accepted));
            read_exactly(&mut client, "Please enter your name\n").await;
            // About 40 KiB of answers, less than the coalescing limit, far more than the
            // socket takes; the burst ends in half a request, so the answers are still held
            // back when the server's reader goes to wait for the rest of it.
            const N: usize = 3_000;
            let mut requests: String = (0..N).map(|i| format!("n{i}\n")).collect();
            requests.push_str("part");
            client.write_all(requests.as_bytes()).await.unwrap();
            // Read nothing for a while: the server's socket fills up.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let answers: String = (0..N).map(|i| format!("Hello, n{i}!\n")).collect();
            read_exactly(&mut client, &answers).await;
            client.write_all(b"ial\n").await.unwrap();
            read_exactly(&mut client, "Hello, partial!\n").await;
            drop(client);
            within(serving).await.unwrap();
        },
        &sends,
    );
}

/// A server-side connection that has read request `a` with request `b` still pending, so that
/// what it writes now is held back; the selector must outlive the rest.
async fn with_a_pending_request() -> (
    SelectorManager,
    TcpStream,
    Socket,
    net_io::ByteReadChannel,
    net_io::ByteWriteChannel,
) {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let output = socket.open_write_channel(true).unwrap();
    client.write_all(b"a\nb\n").await.unwrap();
    assert!(within(input.await_content(4)).await.unwrap());
    let line = input.read_line(16, LineEnding::Default).await.unwrap();
    assert_eq!(line.as_deref(), Some("a"));
    assert_eq!(input.available_for_read(), 2, "`b` is pending");
    (selector, client, socket, input, output)
}

/// While requests are still to be read, answers are held back; once the socket is closed, a
/// write must fail with `Closed` instead of being held and reported written.
#[tokio::test]
async fn a_write_after_close_fails_while_requests_are_pending() {
    let (_selector, _client, socket, _input, mut output) = with_a_pending_request().await;
    output.write_string_utf8("held\n").await.unwrap();
    socket.close();
    let e = output.write_string_utf8("late\n").await.unwrap_err();
    assert!(matches!(
        net_sockets::Error::from(e),
        net_sockets::Error::Closed
    ));
}

/// Answers held back while requests are pending leave when the write channel closes, before
/// the FIN.
#[tokio::test]
async fn held_back_answers_leave_before_a_half_close() {
    let (_selector, mut client, _socket, _input, mut output) = with_a_pending_request().await;
    output.write_string_utf8("first\n").await.unwrap();
    output.write_string_utf8("second\n").await.unwrap();
    output.flush_and_close().await.unwrap();
    let mut everything = Vec::new();
    within(client.read_to_end(&mut everything)).await.unwrap();
    assert_eq!(everything, b"first\nsecond\n");
}

/// An answer written while the reader waits for the rest of a line leaves at once: a partial
/// request is not a pending one, and a waiting reader would never send what is held back (a
/// chat server writes to a client that is still typing).
#[tokio::test]
async fn a_write_while_the_reader_waits_for_the_rest_of_a_line_leaves_at_once() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    client.write_all(b"hel").await.unwrap();
    assert!(within(input.await_content(3)).await.unwrap());
    let reading = input.read_line(16, LineEnding::Default);
    tokio::pin!(reading);
    assert!(net_tests::pending_after_one_poll(reading.as_mut()).await);
    output.write_string_utf8("news\n").await.unwrap();
    read_exactly(&mut client, "news\n").await;
    client.write_all(b"lo\n").await.unwrap();
    assert_eq!(within(reading).await.unwrap().as_deref(), Some("hello"));
}

/// The same after the skip of an over-long line emptied the buffer: the reader waits, so an
/// answer written meanwhile is not held back.
#[tokio::test]
async fn a_write_while_the_reader_waits_after_skipping_a_long_line_leaves_at_once() {
    let selector = SelectorManager::new();
    let server = tcp_listener(&selector).await;
    let (mut client, mut socket) = raw_peer_of(&server).await;
    let mut input = socket.open_read_channel().unwrap();
    let mut output = socket.open_write_channel(true).unwrap();
    client
        .write_all(b"far too long for the limit")
        .await
        .unwrap();
    assert!(within(input.await_content(26)).await.unwrap());
    let e = input.read_line(4, LineEnding::Default).await.unwrap_err();
    assert!(
        matches!(e, net_io::Error::TooLongLine { limit: 4 }),
        "{e:?}"
    );
    let reading = input.read_line(4, LineEnding::Default);
    tokio::pin!(reading);
    assert!(net_tests::pending_after_one_poll(reading.as_mut()).await);
    output.write_string_utf8("too long\n").await.unwrap();
    read_exactly(&mut client, "too long\n").await;
    client.write_all(b"\nok\n").await.unwrap();
    assert_eq!(within(reading).await.unwrap().as_deref(), Some("ok"));
}

/// Answers held back while a request was pending leave once the read channel is dropped: no
/// reader will ever wait again to send them, and the writer may have nothing more to write.
#[tokio::test]
async fn held_back_answers_leave_when_the_read_channel_is_dropped() {
    let (_selector, mut client, _socket, input, mut output) = with_a_pending_request().await;
    output.write_string_utf8("A\n").await.unwrap();
    drop(input);
    read_exactly(&mut client, "A\n").await;
    drop(output);
}

/// The same when the read channel is cancelled instead.
#[tokio::test]
async fn held_back_answers_leave_when_the_read_channel_is_cancelled() {
    let (_selector, mut client, _socket, mut input, mut output) = with_a_pending_request().await;
    output.write_string_utf8("A\n").await.unwrap();
    input.cancel();
    read_exactly(&mut client, "A\n").await;
    drop((input, output));
}

/// The same over TLS, whose read channel does not own the socket's read half: dropping it
/// sends the records held back for it.
#[tokio::test]
async fn held_back_tls_answers_leave_when_the_read_channel_is_dropped() {
    use net_tls::TlsExt;
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let (done, answered) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let socket = server.accept().await.unwrap();
        let mut tls = socket.tls_server(&server_config).await.unwrap();
        let mut input = tls.open_read_channel().unwrap();
        let mut output = tls.open_write_channel(true).unwrap();
        let line = input.read_line(16, LineEnding::Default).await.unwrap();
        assert_eq!(line.as_deref(), Some("a"));
        assert_eq!(input.available_for_read(), 2, "`b` is pending");
        output.write_string_utf8("A\n").await.unwrap();
        drop(input);
        // The writer has nothing more to say for now; the connection stays open.
        let _ = answered.await;
        drop((tls, output));
    });
    let client = a_socket(&selector)
        .tcp()
        .connect(("localhost", port))
        .await
        .unwrap();
    let mut tls = within(client.tls(pki.client_config().build().unwrap()))
        .await
        .unwrap();
    let mut input = tls.open_read_channel().unwrap();
    let mut output = tls.open_write_channel(false).unwrap();
    output.write_string_utf8("a\nb\n").await.unwrap();
    output.flush().await.unwrap();
    let line = within(input.read_line(16, LineEnding::Default)).await;
    assert_eq!(line.unwrap().as_deref(), Some("A"));
    drop(done);
    drop((tls, input, output));
    within(serving).await.unwrap();
}

/// A listener whose connections have a 4 KiB send buffer: with a client's 4 KiB receive buffer
/// (see [`with_small_buffers_on`]), far less than the 40 KiB of answers the tests below hold
/// back.
async fn small_buffer_listener(selector: &SelectorManager) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .send_buffer_size(4096)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap()
}

/// A raw client with a small receive buffer, and the socket `server` accepted for it.
async fn with_small_buffers_on(server: &ServerSocket) -> (TcpStream, Socket) {
    let peer = tokio::net::TcpSocket::new_v4().unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    net_tests::fault::raw_peer_from(peer, server).await
}

/// 400 one-byte requests, answered with 100 bytes each, then `close` with one more request
/// still pending when the server closes: all of it arrives in the first read of the server.
const CLOSE_BURST: usize = 400;

fn answer(i: usize) -> String {
    format!("{i:>99}\n")
}

/// Answers held back while requests are pending, more than the socket takes at once, and then
/// the socket is closed (while a request is still pending): every answer arrives, in order,
/// before the end of the stream, as it would have without coalescing (each write would have
/// waited for the socket). Before the fix the close sent what the socket took at once and then
/// a FIN: the peer saw a clean end with most answers missing.
#[tokio::test]
async fn a_close_with_more_held_back_than_the_socket_takes_still_delivers_everything() {
    let selector = SelectorManager::new();
    let mut client = closed_with_answers_held_back(&selector).await;
    let mut everything = Vec::new();
    within(client.read_to_end(&mut everything)).await.unwrap();
    assert_every_answer(everything);
}

/// A server socket that answered [`CLOSE_BURST`] requests (held back, more than the socket
/// takes) and closed; the raw client, which has read nothing yet.
async fn closed_with_answers_held_back(selector: &SelectorManager) -> TcpStream {
    closed_with_answers_held_back_on(&small_buffer_listener(selector).await).await
}

/// As [`closed_with_answers_held_back`], for a connection accepted by `server`.
async fn closed_with_answers_held_back_on(server: &ServerSocket) -> TcpStream {
    let (mut client, mut socket) = with_small_buffers_on(server).await;
    let serving = tokio::spawn(async move {
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        let mut i = 0;
        loop {
            let line = input.read_line(16, LineEnding::Default).await.unwrap();
            if line.as_deref() == Some("close") {
                assert!(input.available_for_read() > 0, "a request is pending");
                socket.close();
                break;
            }
            output.write_string_utf8(&answer(i)).await.unwrap();
            i += 1;
        }
        drop((input, output));
    });
    let mut requests = "x\n".repeat(CLOSE_BURST);
    requests.push_str("close\nextra\n");
    client.write_all(requests.as_bytes()).await.unwrap();
    within(serving).await.unwrap();
    client
}

/// A client that read every answer of such a close and its end, and connects again, is never
/// refused for the place the closed connection held (`max_connections_per_ip(1)`): the task that
/// sends the answers frees the place before its release of the descriptor sends the FIN. It
/// freed it after, and the next connection, accepted on another thread meanwhile, was refused.
/// Nothing can hold that instant open from outside, so the test repeats the round for about a
/// second, on a runtime with threads of its own (see also
/// `server_toolkit::a_client_that_saw_the_end_of_its_connection_is_never_refused_its_place`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_saw_the_end_after_held_back_answers_is_never_refused_its_place() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .send_buffer_size(4096)
        .max_connections_per_ip(1)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let address = server.local_address().as_inet().unwrap().socket_addr();
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(1) {
        let mut client = closed_with_answers_held_back_on(&server).await;
        let mut everything = Vec::new();
        within(client.read_to_end(&mut everything)).await.unwrap();
        assert_every_answer(everything);
        // Its next connection: accepted, or closed at once by the listener (refused).
        let mut next = TcpStream::connect(address).await.unwrap();
        let mut byte = [0; 1];
        let accepted = within(async {
            tokio::select! {
                accepted = server.accept() => accepted.unwrap(),
                end = next.read(&mut byte) => {
                    panic!("round {rounds}: refused after it saw the end ({end:?})")
                }
            }
        })
        .await;
        accepted.close();
        rounds += 1;
    }
    assert!(rounds > 0);
}

fn assert_every_answer(everything: Vec<u8>) {
    let answers: String = (0..CLOSE_BURST).map(answer).collect();
    assert_eq!(everything.len(), answers.len(), "answers lost at close");
    assert_eq!(String::from_utf8(everything).unwrap(), answers);
}

/// The same close, then a graceful shutdown of the selector: the connection closed by itself,
/// so the shutdown's close at its end must not reset it while its answers are still on their
/// way (the shutdown waits for them, within its grace period). Before the fix the shutdown found
/// no connection open, closed the selector at once, and that reset the connection.
#[tokio::test]
async fn a_selector_shutdown_after_such_a_close_waits_for_the_answers() {
    let selector = SelectorManager::new();
    let mut client = closed_with_answers_held_back(&selector).await;
    let shutting_down = {
        let selector = selector.clone();
        tokio::spawn(async move { selector.shutdown(Duration::from_secs(30)).await })
    };
    let mut everything = Vec::new();
    let read = within(client.read_to_end(&mut everything)).await;
    assert!(read.is_ok(), "the connection was reset: {read:?}");
    assert_every_answer(everything);
    let report = within(shutting_down).await.unwrap();
    assert_eq!(report.cut, 0);
}

/// The same close, then a graceful shutdown of the listener that accepted the connection and,
/// once it returns, the selector's close (what a server does on its way out): the listener's
/// shutdown waits for the answers, as the selector's does, and counts the connection as
/// finished. Before the fix it found no connection open and returned at once, and the
/// selector's close reset the connection with most answers missing.
#[tokio::test]
async fn a_listener_shutdown_after_such_a_close_waits_for_the_answers() {
    let selector = SelectorManager::new();
    let server = small_buffer_listener(&selector).await;
    let mut client = closed_with_answers_held_back_on(&server).await;
    let shutting_down = {
        let selector = selector.clone();
        tokio::spawn(async move {
            let report = server.shutdown(Duration::from_secs(30)).await;
            selector.close();
            report
        })
    };
    let mut everything = Vec::new();
    let read = within(client.read_to_end(&mut everything)).await;
    assert!(read.is_ok(), "the connection was reset: {read:?}");
    assert_every_answer(everything);
    let report = within(shutting_down).await.unwrap();
    assert_eq!((report.finished, report.cut), (1, 0));
}

/// The same close, then a listener's shutdown whose grace period ends while the client reads
/// nothing: the shutdown returns after its grace period (it does not wait for answers the
/// client never takes), counts the connection as cut, and the connection is reset, never ended
/// cleanly with answers missing.
#[tokio::test]
async fn a_listener_shutdown_cuts_held_back_answers_at_the_end_of_its_grace_period() {
    let selector = SelectorManager::new();
    let server = small_buffer_listener(&selector).await;
    let mut client = closed_with_answers_held_back_on(&server).await;
    let report = within(server.shutdown(Duration::from_millis(200))).await;
    assert_eq!((report.finished, report.cut), (0, 1));
    let mut everything = Vec::new();
    let read = within(client.read_to_end(&mut everything)).await;
    let e = read.expect_err("a clean end with answers missing");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

/// The same close, and then the runtime that runs the sending task shuts down before the
/// answers left: the connection is reset, never ended cleanly with answers missing. Before the
/// fix the dropped task released the descriptor gracefully: a FIN after part of the answers.
#[test]
fn a_runtime_shut_down_before_held_back_answers_left_resets_the_connection() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(async {
        let selector = SelectorManager::new();
        closed_with_answers_held_back(&selector)
            .await
            .into_std()
            .unwrap()
    });
    drop(runtime);
    let mut client = client;
    client.set_nonblocking(false).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut everything = Vec::new();
    let read = std::io::Read::read_to_end(&mut client, &mut everything);
    match read {
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        Ok(_) => assert_every_answer(everything),
    }
}

/// Answers held back (more than the socket takes) on a connection still open when a listener's
/// grace period ends: the shutdown's cut starts their sending after its cut signal was given,
/// and that sending stops at once (the shutdown returns, not waiting for a client that reads
/// nothing), the connection counts as cut and is reset, never ended cleanly with answers
/// missing. (Sound when written; coverage for a cut that starts sending held-back answers.)
#[tokio::test]
async fn a_listener_shutdown_cutting_an_open_connection_with_answers_held_back_resets_it() {
    let selector = SelectorManager::new();
    let server = small_buffer_listener(&selector).await;
    let (mut client, kept) = open_with_answers_held_back_on(&server).await;
    let report = within(server.shutdown(Duration::from_millis(200))).await;
    assert_eq!((report.finished, report.cut), (0, 1));
    assert!(kept.0.is_closed());
    let mut everything = Vec::new();
    let read = within(client.read_to_end(&mut everything)).await;
    let e = read.expect_err("a clean end with answers missing");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    assert!(everything.len() < CLOSE_BURST * 100);
}

/// A connection accepted by `server` that answered [`CLOSE_BURST`] requests (held back, more
/// than the socket takes) and is kept open, a request still pending; the raw client, which has
/// read nothing yet.
async fn open_with_answers_held_back_on(
    server: &ServerSocket,
) -> (
    TcpStream,
    (Socket, net_io::ByteReadChannel, net_io::ByteWriteChannel),
) {
    let (mut client, mut socket) = with_small_buffers_on(server).await;
    let serving = tokio::spawn(async move {
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        let mut i = 0;
        loop {
            let line = input.read_line(16, LineEnding::Default).await.unwrap();
            if line.as_deref() == Some("close") {
                assert!(input.available_for_read() > 0, "a request is pending");
                break;
            }
            output.write_string_utf8(&answer(i)).await.unwrap();
            i += 1;
        }
        (socket, input, output)
    });
    let mut requests = "x\n".repeat(CLOSE_BURST);
    requests.push_str("close\nextra\n");
    client.write_all(requests.as_bytes()).await.unwrap();
    (client, within(serving).await.unwrap())
}

/// A selector's graceful shutdown under way on another thread when the selector's runtime
/// ends, with a connection open whose answers are held back (more than the socket takes): the
/// runtime's end closes the selector, which cuts the connection, and the task that would send
/// the answers dies with the runtime, resetting it. The shutdown counts it as cut, as it
/// counts a connection without held-back answers (`lifecycle_runtime::
/// a_graceful_shutdown_under_way_when_the_runtime_ends_returns`), never as finished.
#[test]
fn a_connection_cut_by_the_end_of_the_runtime_with_answers_held_back_counts_as_cut() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (selector, client, kept) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let server = small_buffer_listener(&selector).await;
        let (client, kept) = open_with_answers_held_back_on(&server).await;
        (selector, client.into_std().unwrap(), kept)
    });
    let (began, shutdown_began) = std::sync::mpsc::channel();
    let waiting = std::thread::spawn({
        let selector = selector.clone();
        move || {
            let other = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            other.block_on(async move {
                let mut shutdown = std::pin::pin!(selector.shutdown(Duration::from_secs(60)));
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(shutdown.as_mut().poll(cx).is_pending())
                })
                .await;
                assert!(first, "nothing to wait for");
                began.send(()).unwrap();
                shutdown.await
            })
        }
    });
    shutdown_began.recv_timeout(net_tests::HANG_LIMIT).unwrap();
    drop(runtime);
    let report = waiting.join().expect("the waiting thread panicked");
    assert_eq!((report.finished, report.cut), (0, 1));
    let mut client = client;
    client.set_nonblocking(false).unwrap();
    client
        .set_read_timeout(Some(net_tests::HANG_LIMIT))
        .unwrap();
    let mut everything = Vec::new();
    let read = std::io::Read::read_to_end(&mut client, &mut everything);
    let e = read.expect_err("a clean end with answers missing");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    drop(kept);
}

/// Answers held back (more than the socket takes) when the reader goes to wait, so that a task
/// sends them as the socket drains; the client reads nothing, the server's read times out
/// (`socket_timeout`) and the server drops the socket and its channels. That drop closes the
/// connection, and its held-back answers, never taken for a `socket_timeout`, reset it: the
/// connection leaves its listener's count. Before the fix the sending task kept the
/// connection alive, unclosed and counted open, for as long as the client read nothing.
#[tokio::test]
async fn a_connection_dropped_while_its_held_back_answers_wait_is_closed_by_socket_timeout() {
    let selector = SelectorManager::new();
    let server = a_socket(&selector)
        .tcp()
        .send_buffer_size(4096)
        .socket_timeout(Duration::from_millis(200))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let (mut client, mut socket) = with_small_buffers_on(&server).await;
    let serving = tokio::spawn(async move {
        let mut input = socket.open_read_channel().unwrap();
        let mut output = socket.open_write_channel(true).unwrap();
        let mut i = 0;
        // Answers every request; the read of the unfinished last one waits, and times out.
        let e = loop {
            match input.read_line(16, LineEnding::Default).await {
                Ok(Some(_)) => {}
                Ok(None) => panic!("the client ended"),
                Err(e) => break e,
            }
            output.write_string_utf8(&answer(i)).await.unwrap();
            i += 1;
        };
        assert!(matches!(e, net_io::Error::Timeout), "{e}");
        drop((socket, input, output));
    });
    let mut requests = "x\n".repeat(CLOSE_BURST);
    requests.push_str("unfinished");
    client.write_all(requests.as_bytes()).await.unwrap();
    within(serving).await.unwrap();
    let closed = async {
        while server.stats().open > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let closed = tokio::time::timeout(Duration::from_secs(5), closed).await;
    assert!(closed.is_ok(), "the dropped connection is still open");
    let mut everything = Vec::new();
    let read = within(client.read_to_end(&mut everything)).await;
    let e = read.expect_err("a clean end with answers missing");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

/// Answers held back (more than the socket takes at once) on an open connection, a request
/// still pending, and then the write channel's `flush_and_close`: every answer leaves, in
/// order, before the FIN, as the socket drains. Before the fix the half-close sent what the
/// socket took at once and then the FIN: the client saw a clean end with most answers missing.
#[tokio::test]
async fn a_half_close_with_more_held_back_than_the_socket_takes_still_delivers_everything() {
    let selector = SelectorManager::new();
    let server = small_buffer_listener(&selector).await;
    let (mut client, (socket, input, mut output)) = open_with_answers_held_back_on(&server).await;
    let closing = tokio::spawn(async move {
        output.flush_and_close().await.unwrap();
        (socket, input)
    });
    let mut everything = Vec::new();
    within(client.read_to_end(&mut everything)).await.unwrap();
    assert_every_answer(everything);
    drop(within(closing).await.unwrap());
}

/// The same with a flush instead of a half-close, once the pending request was read: a flush
/// that returns has every held-back answer with the kernel, so the client gets them all while
/// the server waits (here, for the client's next request). Before the fix the flush returned
/// with most of them still held back.
#[tokio::test]
async fn a_flush_with_more_held_back_than_the_socket_takes_sends_everything() {
    let selector = SelectorManager::new();
    let server = small_buffer_listener(&selector).await;
    let (mut client, (socket, mut input, mut output)) =
        open_with_answers_held_back_on(&server).await;
    let line = input.read_line(16, LineEnding::Default).await.unwrap();
    assert_eq!(line.as_deref(), Some("extra"));
    assert_eq!(input.available_for_read(), 0, "nothing is pending");
    let flushing = tokio::spawn(async move {
        output.flush().await.unwrap();
        (socket, input, output)
    });
    let answers: String = (0..CLOSE_BURST).map(answer).collect();
    let mut everything = vec![0; answers.len()];
    within(client.read_exact(&mut everything)).await.unwrap();
    assert_eq!(String::from_utf8(everything).unwrap(), answers);
    let (_socket, _input, _output) = within(flushing).await.unwrap();
}

/// Serves one connection as a line server does: each line is answered with `Hello, NAME!`,
/// except empty ones (a keep-alive, answered with nothing). With `sniff`, it first looks ahead
/// for 64 bytes (as a server that tells protocols apart does), and so sees the end of a short
/// stream before it reads a line. Once the stream has ended it keeps the connection open and
/// neither writes nor closes until `done` fires. Returns the lines answered.
async fn answer_each_line_then_wait(
    mut input: net_io::ByteReadChannel,
    mut output: net_io::ByteWriteChannel,
    sniff: bool,
    done: tokio::sync::oneshot::Receiver<()>,
) -> Vec<String> {
    if sniff {
        assert!(!input.await_content(64).await.unwrap(), "a short stream");
    }
    let mut lines = Vec::new();
    while let Some(name) = input.read_line(1024, LineEnding::Default).await.unwrap() {
        if name.is_empty() {
            continue;
        }
        output
            .write_string_utf8(&format!("Hello, {name}!\n"))
            .await
            .unwrap();
        lines.push(name);
    }
    let _ = done.await;
    drop((input, output));
    lines
}

/// A client pipelines two requests and a keep-alive, and half-closes, in one go; the server
/// reads `a` and `b` with more input pending (their answers are held back), then the
/// keep-alive, then the end of the stream. The answers leave, though the server then neither
/// writes nor closes.
fn held_back_answers_leave_at_the_end_of_the_stream(sniff: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let server = tcp_listener(&selector).await;
        let (mut client, mut socket) = raw_peer_of(&server).await;
        let input = socket.open_read_channel().unwrap();
        let output = socket.open_write_channel(true).unwrap();
        let (done, wait) = tokio::sync::oneshot::channel();
        let serving = tokio::spawn(answer_each_line_then_wait(input, output, sniff, wait));
        client.write_all(b"a\nb\n\n").await.unwrap();
        client.shutdown().await.unwrap();
        read_exactly(&mut client, "Hello, a!\nHello, b!\n").await;
        drop(done);
        assert_eq!(within(serving).await.unwrap(), ["a", "b"]);
        drop(socket);
    });
}

#[test]
fn answers_held_back_for_a_reader_that_reaches_the_end_of_the_stream_leave() {
    held_back_answers_leave_at_the_end_of_the_stream(false);
}

/// The same when the server saw the end of the stream before it read the requests: no read
/// from the socket follows the last one, so none sends what is held back.
#[test]
fn answers_held_back_for_a_reader_that_saw_the_end_of_the_stream_first_leave() {
    held_back_answers_leave_at_the_end_of_the_stream(true);
}

/// The same over TLS, the client's records and its `close_notify` written in one send: the
/// server's TLS session sees the end of the stream without reading from the socket again.
#[tokio::test]
async fn tls_answers_held_back_for_a_reader_that_reaches_the_end_of_the_stream_leave() {
    use net_tls::TlsExt;
    use std::io::{Read, Write};
    let selector = SelectorManager::new();
    let pki = net_tests::pki::Pki::generate();
    let server_config = pki.server_config().build().unwrap();
    let server = tcp_listener(&selector).await;
    let port = server.port().unwrap();
    let (done, wait) = tokio::sync::oneshot::channel();
    let serving = tokio::spawn(async move {
        let socket = server.accept().await.unwrap();
        let mut tls = socket.tls_server(&server_config).await.unwrap();
        let input = tls.open_read_channel().unwrap();
        let output = tls.open_write_channel(true).unwrap();
        let lines = answer_each_line_then_wait(input, output, false, wait).await;
        drop(tls);
        lines
    });
    let config = net_tests::tls::rustls_client_config(&pki.ca, net_tls::rustls::DEFAULT_VERSIONS);
    let client = tokio::task::spawn_blocking(move || {
        let mut session =
            net_tls::rustls::ClientConnection::new(config, net_tests::tls::localhost()).unwrap();
        let mut socket = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        socket
            .set_read_timeout(Some(net_tests::HANG_LIMIT))
            .unwrap();
        while session.is_handshaking() {
            session.complete_io(&mut socket).unwrap();
        }
        // The requests and the close_notify, in one send, then the FIN.
        session.writer().write_all(b"a\nb\n\n").unwrap();
        session.send_close_notify();
        let mut records = Vec::new();
        while session.wants_write() {
            session.write_tls(&mut records).unwrap();
        }
        socket.write_all(&records).unwrap();
        socket.shutdown(std::net::Shutdown::Write).unwrap();
        let want = b"Hello, a!\nHello, b!\n";
        let mut answers = Vec::new();
        while answers.len() < want.len() {
            // The answers never coming fails here, at the read timeout.
            let read = session.read_tls(&mut socket).expect("the answers");
            assert!(read > 0, "the server closed without answering");
            session.process_new_packets().unwrap();
            let mut plain = [0; 64];
            loop {
                match session.reader().read(&mut plain) {
                    Ok(0) => break,
                    Ok(n) => answers.extend_from_slice(&plain[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        String::from_utf8(answers).unwrap()
    });
    let answers = client.await.unwrap();
    assert_eq!(answers, "Hello, a!\nHello, b!\n");
    drop(done);
    assert_eq!(within(serving).await.unwrap(), ["a", "b"]);
}
