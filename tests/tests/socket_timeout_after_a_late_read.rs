//! `socket_timeout` when the task that waits runs late: the guide says the timeout "starts when
//! a read or write begins to wait" and that "every read or write that completes (bytes, the
//! end, an error) starts it again". A read waits, its peer's line comes in time, but the task
//! runs only after the timeout's deadline (its runtime's one thread was busy, as on a loaded
//! server): that read returns the line, and the next read waits afresh for the next line. Over
//! TLS the next read failed with `Timeout` at once: tokio-rustls's read went on reading the
//! socket after it had the line, found the deadline passed, and kept that error for the next
//! read. A binary of its own: each test blocks its runtime's thread on purpose.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use net_io::{ByteReadChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::within;
use net_tls::{TlsExt, rustls};

/// The socket timeout; the runtime's thread is blocked for twice as long.
const TIMEOUT: Duration = Duration::from_millis(500);

async fn listener(selector: &SelectorManager) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .socket_timeout(TIMEOUT)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap()
}

/// The client's part, on a thread of its own: "hello\n" when `hello` says so, then "world\n"
/// 50 ms after `world` says so (so that the first read is over before it comes), then it
/// reads until the server closes.
fn client(
    mut stream: impl std::io::Read + std::io::Write,
    hello: mpsc::Receiver<()>,
    world: mpsc::Receiver<()>,
) {
    hello.recv_timeout(Duration::from_secs(10)).unwrap();
    stream.write_all(b"hello\n").unwrap();
    stream.flush().unwrap();
    world.recv_timeout(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    stream.write_all(b"world\n").unwrap();
    stream.flush().unwrap();
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
}

/// Reads two lines in a task of its own while this runtime's only thread is blocked past the
/// timeout after the first line was sent; asserts that both lines are read.
async fn two_lines_after_a_late_turn(
    mut input: ByteReadChannel,
    say_hello: mpsc::Sender<()>,
    say_world: mpsc::Sender<()>,
) {
    let reader = tokio::spawn(async move {
        let first = input.read_line(64, LineEnding::Default).await;
        let started = Instant::now();
        let second = input.read_line(64, LineEnding::Default).await;
        (first, second, started.elapsed())
    });
    // The reader begins to wait (its timer armed); then the client sends while this runtime's
    // only thread is busy for longer than the timeout.
    tokio::time::sleep(Duration::from_millis(50)).await;
    say_hello.send(()).unwrap();
    std::thread::sleep(TIMEOUT * 2);
    say_world.send(()).unwrap();
    let (first, second, took) = within(reader).await.unwrap();
    assert_eq!(first.unwrap().as_deref(), Some("hello"));
    assert!(
        matches!(&second, Ok(Some(line)) if line == "world"),
        "the read after one that returned late ended after {took:?}: {second:?}"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_tls_read_after_one_that_ran_late_waits_afresh() {
    let selector = SelectorManager::new();
    let ca = TestCa::new("late read");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = listener(&selector).await;
    let port = listener.port().unwrap();
    let (say_hello, hello) = mpsc::channel();
    let (say_world, world) = mpsc::channel();
    let client_config = rustls_client(&ca);
    let client = std::thread::spawn(move || {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let session = rustls::ClientConnection::new(client_config, localhost()).unwrap();
        let mut tls = rustls::StreamOwned::new(session, tcp);
        while tls.conn.is_handshaking() {
            tls.conn.complete_io(&mut tls.sock).unwrap();
        }
        client(tls, hello, world);
    });
    let socket = within(listener.accept()).await.unwrap();
    let mut tls = within(socket.tls_server(&config)).await.unwrap();
    let input = tls.open_read_channel().unwrap();
    two_lines_after_a_late_turn(input, say_hello, say_world).await;
    tls.close();
    client.join().unwrap();
}

/// The same on a plain socket.
#[tokio::test(flavor = "current_thread")]
async fn a_plain_read_after_one_that_ran_late_waits_afresh() {
    let selector = SelectorManager::new();
    let listener = listener(&selector).await;
    let port = listener.port().unwrap();
    let (say_hello, hello) = mpsc::channel();
    let (say_world, world) = mpsc::channel();
    let client = std::thread::spawn(move || {
        let tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        client(tcp, hello, world);
    });
    let mut socket = within(listener.accept()).await.unwrap();
    let input = socket.open_read_channel().unwrap();
    two_lines_after_a_late_turn(input, say_hello, say_world).await;
    socket.close();
    client.join().unwrap();
}
