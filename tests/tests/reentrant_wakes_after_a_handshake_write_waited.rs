//! A TLS handshake whose write had to wait for the socket's room (a certificate chain larger
//! than the socket's send buffer and the peer's window, a peer that does not read yet) leaves
//! the wakers of the task that ran it with the socket for its room, after that write went
//! through: the socket keeps them until a write of another task replaces them. That write
//! replaces them under the session's lock; when they are their task's last references (an
//! executor whose pending tasks only their wakers keep), that task's drop may close the same
//! socket on that thread, and the close takes the session's lock: before, it waited for it for
//! ever, and the write never returned (see `reentrant_wakes_elsewhere` for the other cases).

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, Socket, Transport, a_socket};
use net_tests::pki::Pki;
use net_tests::wakes::{DEADLOCK, Owner, Task, returns};
use net_tls::{TlsExt, TlsServerConfig};
use tokio::io::AsyncWrite;

/// The certificate chain's size: far more than a socket's send buffer of 4 KiB and a peer's
/// receive buffer of 4 KiB hold, so that the handshake's write must wait; within rustls's
/// limit of 64 KiB for a handshake message.
const CHAIN_BYTES: usize = 48 * 1024;

/// Closes its socket when dropped (a connection's guard).
struct CloseOnDrop<T: Transport>(Arc<Socket<T>>);

impl<T: Transport> Drop for CloseOnDrop<T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The usual server leaf, its chain padded with copies of its CA's certificate to
/// [`CHAIN_BYTES`] (a client finds the CA among its roots at once, and never reads them).
fn server_config_with_a_large_chain(pki: &Pki) -> TlsServerConfig {
    let leaf = pki.server.cert_der().clone();
    let ca = pki.ca.der();
    let copies = CHAIN_BYTES / ca.len();
    let chain = std::iter::once(leaf).chain(std::iter::repeat_n(ca, copies));
    TlsServerConfig::builder()
        .certificate_chain_der(chain)
        .private_key_der(pki.server.key_der())
        .build()
        .unwrap()
}

/// Sends what `client` has queued to `tcp`, and takes in what `tcp` holds now (a socket that
/// never blocks).
fn exchange(client: &mut net_tls::rustls::ClientConnection, tcp: &mut std::net::TcpStream) {
    while client.wants_write() {
        match client.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("the client's send: {e}"),
        }
    }
    loop {
        match client.read_tls(tcp) {
            Ok(0) => panic!("the server ended the connection"),
            Ok(_) => {
                client.process_new_packets().expect("the server's records");
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => panic!("the client's read: {e}"),
        }
    }
}

/// Task A runs a server handshake (polled by this thread until it is done, then left pending,
/// owned by its wakers only) against a client that reads nothing until the server's flight
/// (a chain of 48 KiB) filled the socket: the handshake's write waits, so the socket keeps A's
/// wakers for its room, also once the client read on and the handshake ended. A hands the
/// channels away, with a guard that closes the TLS socket. Another task reads, which replaces
/// A's wakers for the socket's input (A lives on: the socket keeps its wakers for its room),
/// then writes more than the socket takes (the client reads no more), which replaces those
/// under the session's lock. As the last of them goes, task A goes, and its guard closes the
/// TLS socket: that close must return, and the write with it.
#[test]
fn a_tls_write_that_replaces_the_wakers_a_handshake_write_left_lets_them_go() {
    let pki = Pki::generate();
    let config = server_config_with_a_large_chain(&pki);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (selector, listener, mut tcp, accepted) = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .send_buffer_size(4096)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let port = listener.port().unwrap();
        let raw = tokio::net::TcpSocket::new_v4().unwrap();
        raw.set_recv_buffer_size(4096).unwrap();
        let (tcp, accepted) = net_tests::within(async {
            tokio::join!(
                raw.connect(([127, 0, 0, 1], port).into()),
                listener.accept()
            )
        })
        .await;
        let tcp = tcp.unwrap().into_std().unwrap();
        tcp.set_nonblocking(true).unwrap();
        (selector, listener, tcp, accepted.unwrap())
    });
    let mut client = net_tls::rustls::ClientConnection::new(
        net_tests::tls::rustls_client(&pki.ca),
        net_tests::tls::localhost(),
    )
    .unwrap();
    let handle = runtime.handle().clone();
    let (published, handed) = mpsc::channel();
    let mut task: Task = Box::pin(async move {
        let mut server = accepted.tls_server(&config).await.unwrap();
        let input = server.open_read_channel().unwrap();
        let output = server.open_write_channel(false).unwrap();
        let server = Arc::new(server);
        let guard = CloseOnDrop(Arc::clone(&server));
        published.send((server, input, output)).unwrap();
        std::future::pending::<()>().await;
        drop(guard);
    });
    // Polled by this thread until the handshake is done (its wake-ups, which find no task in
    // the owner meanwhile, are not needed: it is polled again and again), then left pending.
    let owner = Owner::<Task>::new();
    let waker = Waker::from(Arc::clone(&owner));
    let poll_a = |task: &mut Task| {
        let _context = handle.enter();
        assert!(
            task.as_mut()
                .poll(&mut Context::from_waker(&waker))
                .is_pending()
        );
    };
    // The ClientHello; then nothing is read until the server's flight reached the client:
    // the rest of it (most of 48 KiB) waits for the socket's room, with A's wakers.
    exchange(&mut client, &mut tcp);
    let started = Instant::now();
    loop {
        poll_a(&mut task);
        let mut first = [0u8; 1];
        match tcp.peek(&mut first) {
            Ok(n) if n > 0 => break,
            Ok(_) => panic!("the server ended the connection"),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the client's peek: {e}"),
        }
        assert!(started.elapsed() < DEADLOCK, "the server never answered");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Polled once more before the client reads: the socket has no room yet, A's write waits.
    poll_a(&mut task);
    let (server, input, output) = loop {
        exchange(&mut client, &mut tcp);
        poll_a(&mut task);
        if let Ok(handed) = handed.try_recv() {
            break handed;
        }
        assert!(started.elapsed() < DEADLOCK, "the handshake never ended");
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(!client.is_handshaking());
    // From now on only its wakers keep it.
    *owner.0.lock().unwrap() = Some(task);
    drop((waker, owner));
    // From now on the client reads nothing.
    assert!(!server.is_closed());

    // Another task reads: it replaces A's wakers for the socket's input, and the session's
    // note of them goes once the lock is released. A lives on: the socket keeps its wakers for
    // its room.
    let handle = runtime.handle().clone();
    let input = Arc::new(Mutex::new(input));
    let reads = Arc::clone(&input);
    let read_handle = handle.clone();
    let read_returned = returns(move || {
        let _context = read_handle.enter();
        let mut input = reads.lock().unwrap();
        let read = pin!(input.read_u8());
        assert!(
            read.poll(&mut Context::from_waker(Waker::noop()))
                .is_pending(),
            "the client sent nothing"
        );
    });
    if !read_returned {
        std::mem::forget((runtime, selector, listener, tcp, server, input, output));
        panic!("the read never returned");
    }
    assert!(
        !server.is_closed(),
        "the socket keeps task A's wakers for its room: the handshake's write waited"
    );

    // Another task writes more than the socket takes: it replaces A's wakers for the socket's
    // room under the session's lock.
    let output = Arc::new(Mutex::new(output));
    let writes = Arc::clone(&output);
    let returned = returns(move || {
        let _context = handle.enter();
        let mut output = writes.lock().unwrap();
        let big = vec![b'b'; 64 * 1024];
        let _ = Pin::new(&mut *output).poll_write(&mut Context::from_waker(Waker::noop()), &big);
    });
    if !returned {
        // Left behind: their drops would wait for the deadlocked thread's locks.
        std::mem::forget((runtime, selector, listener, tcp, server, input, output));
        panic!(
            "the write never returned: the close of the task whose last wakers it replaced \
             (left by its handshake's write, which waited) waited for the session's lock, \
             which the write held"
        );
    }
    assert!(
        server.is_closed(),
        "the write let go of task A's last wakers: its guard closed the socket"
    );
}
