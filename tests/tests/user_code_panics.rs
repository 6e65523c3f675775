//! Code the user supplies that panics: the library is left whole for the other sockets and for
//! later calls, and the panic goes on to whoever made the call that ran that code.
//!
//! - A task's waker that panics when it is woken (a custom executor's): the selector's close,
//!   which wakes every pending operation of its sockets, still closes every socket, releases
//!   every descriptor and wakes the other tasks; a socket's close still wakes the other tasks
//!   waiting on it; a graceful shutdown (the selector's, a listener's) still stops every
//!   listener, tells every connection, and cuts and counts those left; a connection's close
//!   whose count wakes such a shutdown still wakes the tasks waiting on the connection.
//! - A TLS client's session store (`TlsConfig::from_rustls`) that panics as rustls hands it
//!   the server's session tickets, which a close or a cut takes in before it releases the
//!   socket: the connection is closed all the same (its peer sees the end), and the panic goes
//!   on to the caller of that close, or of the selector's close or shutdown. Where the socket's
//!   drop takes them in as a task that panicked unwinds, that second panic does not abort the
//!   process.

use std::future::Future;
use std::mem::MaybeUninit;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use net_sockets::{Error, SelectorManager, ServerSocket, Socket};
use net_tests::loopback::tcp_listener;
use net_tests::pki::Pki;
use net_tests::tls::{pair, rustls_client};
use net_tests::{HANG_LIMIT, within};
use net_tls::rustls::NamedGroup;
use net_tls::rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use net_tls::rustls::pki_types::ServerName;
use net_tls::{TlsConfig, TlsSocket};

/// A waker that panics when woken, as a custom executor's may.
struct Panics;

impl Wake for Panics {
    fn wake(self: Arc<Self>) {
        panic!("a waker that panics on wake");
    }
}

/// A waker that counts its wakes.
#[derive(Default)]
struct Counts(AtomicUsize);

impl Wake for Counts {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counts {
    fn woken(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }
}

type Accept<'a> = Pin<Box<dyn Future<Output = net_sockets::Result<Socket>> + 'a>>;

/// `listener`'s `accept`, polled once with `waker`: it waits.
fn waiting_accept<'a>(listener: &'a ServerSocket, waker: &Waker) -> Accept<'a> {
    let mut accept: Accept<'a> = Box::pin(listener.accept());
    let polled = accept.as_mut().poll(&mut Context::from_waker(waker));
    assert!(polled.is_pending(), "nobody connected: the accept waits");
    accept
}

/// Whether the listener's port is free: binding it again works only once the listening
/// socket's descriptor is released.
fn port_is_free(listener: &ServerSocket) -> bool {
    let port = listener.port().expect("a TCP listener has a port");
    std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The result of `accept` polled again, with a waker that does not panic.
fn polled_again(accept: &mut Accept<'_>) -> Poll<net_sockets::Result<Socket>> {
    accept
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
}

/// A waker of one task panics as the selector's close wakes it. The close still closes every
/// socket of the selector (each listener's port is free once it returns), wakes the other
/// tasks waiting on them, and the panic goes on to the caller of `close` once all that is done.
/// (Before, the close stopped at that wake: the selector was marked closed, so no later close
/// did anything, and no socket was closed: every port stayed bound, every other waiting task
/// asleep.)
#[tokio::test]
async fn a_waker_that_panics_as_the_selector_closes_leaves_no_socket_open() {
    let selector = SelectorManager::new();
    let listeners = [
        tcp_listener(&selector).await,
        tcp_listener(&selector).await,
        tcp_listener(&selector).await,
    ];
    let panics = Waker::from(Arc::new(Panics));
    let counts = Arc::new(Counts::default());
    let counting = Waker::from(Arc::clone(&counts));
    let mut panicking_accept = waiting_accept(&listeners[0], &panics);
    let mut accepts: Vec<_> = listeners[1..]
        .iter()
        .map(|listener| waiting_accept(listener, &counting))
        .collect();

    let closed = catch_unwind(AssertUnwindSafe(|| selector.close()));

    assert!(
        closed.is_err(),
        "the waker's panic goes on to the close's caller"
    );
    for (i, listener) in listeners.iter().enumerate() {
        assert!(port_is_free(listener), "listener {i}'s port is free");
    }
    assert!(
        counts.woken() >= accepts.len(),
        "every other waiting accept was woken ({} wakes)",
        counts.woken()
    );
    for accept in accepts.iter_mut().chain([&mut panicking_accept]) {
        assert!(
            matches!(
                polled_again(accept),
                Poll::Ready(Err(Error::SelectorClosed))
            ),
            "a waiting accept fails with SelectorClosed"
        );
    }
    // The selector is closed for good: what is made through it fails, typed.
    let bind = net_sockets::a_socket(&selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await;
    assert!(matches!(bind, Err(Error::SelectorClosed)), "{bind:?}");
}

/// A waker of one task panics as a listener's close wakes it. The other task waiting in an
/// `accept` of that listener is woken all the same, and the panic goes on to the caller of
/// `close` once it is. (Before, the close stopped at that wake: the other task was never
/// woken.)
#[tokio::test]
async fn a_waker_that_panics_as_a_listener_closes_leaves_the_other_waits_woken() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let panics = Waker::from(Arc::new(Panics));
    let counts = Arc::new(Counts::default());
    let counting = Waker::from(Arc::clone(&counts));
    // Noted first, so woken first.
    let mut panicking_accept = waiting_accept(&listener, &panics);
    let mut accept = waiting_accept(&listener, &counting);

    let closed = catch_unwind(AssertUnwindSafe(|| listener.close()));

    assert!(
        closed.is_err(),
        "the waker's panic goes on to the close's caller"
    );
    assert!(port_is_free(&listener), "the port is free");
    assert!(counts.woken() >= 1, "the other waiting accept was woken");
    for accept in [&mut accept, &mut panicking_accept] {
        assert!(
            matches!(polled_again(accept), Poll::Ready(Err(Error::Closed))),
            "a waiting accept fails with Closed"
        );
    }
    // Another close finds it closed.
    listener.close();
    drop(selector);
}

/// A connection accepted by `listener`, and its peer.
async fn accepted(listener: &ServerSocket) -> (Socket, std::net::TcpStream) {
    let port = listener.port().expect("a TCP listener has a port");
    let peer = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let socket = within(listener.accept()).await.expect("accept");
    (socket, peer)
}

/// `socket`'s wait for a graceful shutdown, polled once with `waker`: it waits.
fn waiting_for_shutdown<'a>(
    socket: &'a Socket,
    waker: &Waker,
) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    let mut requested = Box::pin(socket.shutdown_requested());
    let polled = requested.as_mut().poll(&mut Context::from_waker(waker));
    assert!(polled.is_pending(), "no shutdown yet");
    requested
}

/// A waker of one task panics as the selector's graceful shutdown wakes it (a pending
/// `accept` of a listener it stops). The shutdown still stops the other listeners, tells the
/// connections, closes the selector and cuts what is left, and the panic goes on to its caller
/// once it is done. (Before, the shutdown stopped at that wake: the connection was never told,
/// the selector never closed.)
#[tokio::test]
async fn a_waker_that_panics_as_the_selectors_shutdown_wakes_it_leaves_the_shutdown_whole() {
    let selector = SelectorManager::new();
    let listeners = [tcp_listener(&selector).await, tcp_listener(&selector).await];
    let (socket, _peer) = accepted(&listeners[1]).await;
    let panics = Waker::from(Arc::new(Panics));
    let counts = Arc::new(Counts::default());
    let mut panicking_accept = waiting_accept(&listeners[0], &panics);
    let mut requested = waiting_for_shutdown(&socket, &Waker::from(Arc::clone(&counts)));

    let shutdown = tokio::spawn({
        let selector = selector.clone();
        async move { selector.shutdown(Duration::ZERO).await }
    });
    let shutdown = within(shutdown).await;

    assert!(
        shutdown.is_err_and(|e| e.is_panic()),
        "the waker's panic goes on to the shutdown's caller"
    );
    assert!(selector.is_closed(), "the shutdown closed the selector");
    assert!(
        counts.woken() >= 1,
        "the connection was told of the shutdown"
    );
    assert!(
        requested
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
    assert!(socket.is_closed(), "the connection left was cut");
    for (i, listener) in listeners.iter().enumerate() {
        assert!(port_is_free(listener), "listener {i}'s port is free");
    }
    assert!(matches!(
        polled_again(&mut panicking_accept),
        Poll::Ready(Err(Error::Closed | Error::SelectorClosed))
    ));
}

/// A waker of one task panics as a listener's graceful shutdown wakes it (a pending `accept`,
/// which the shutdown's close wakes). The shutdown still tells the listener's connections, cuts
/// those left, and the panic goes on to its caller once it is done. (Before, the shutdown
/// stopped at that wake: the connection was never told, nor cut.)
#[tokio::test]
async fn a_waker_that_panics_as_a_listeners_shutdown_wakes_it_leaves_the_shutdown_whole() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let port = listener.port().expect("a TCP listener has a port");
    let (socket, _peer) = accepted(&listener).await;
    let panics = Waker::from(Arc::new(Panics));
    let counts = Arc::new(Counts::default());
    let listener = Arc::new(listener);
    let mut panicking_accept = waiting_accept(&listener, &panics);
    let mut requested = waiting_for_shutdown(&socket, &Waker::from(Arc::clone(&counts)));

    let shutdown = tokio::spawn({
        let listener = Arc::clone(&listener);
        async move { listener.shutdown(Duration::ZERO).await }
    });
    let shutdown = within(shutdown).await;

    assert!(
        shutdown.is_err_and(|e| e.is_panic()),
        "the waker's panic goes on to the shutdown's caller"
    );
    assert!(
        counts.woken() >= 1,
        "the connection was told of the shutdown"
    );
    assert!(
        requested
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
    assert!(socket.is_closed(), "the connection left was cut");
    assert!(
        std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
        "the port is free"
    );
    assert!(matches!(
        polled_again(&mut panicking_accept),
        Poll::Ready(Err(Error::Closed))
    ));
    // The selector goes on: a listener bound through it now works.
    let another = tcp_listener(&selector).await;
    let (_socket, _peer) = accepted(&another).await;
}

/// The waker of the task that runs the selector's graceful shutdown panics as a connection's
/// close leaves the selector's count of connections, which wakes that shutdown. The close ends
/// all the same: the task waiting for it is woken, the peer sees the end, and the panic goes on
/// to the close's caller; the shutdown, polled again, finds the connection gone. (Before, the
/// close stopped in its release: the tasks waiting on the connection were never woken.)
#[tokio::test]
async fn a_waker_that_panics_as_a_close_wakes_a_graceful_shutdown_leaves_the_close_whole() {
    let selector = SelectorManager::new();
    let listener = tcp_listener(&selector).await;
    let (socket, mut peer) = accepted(&listener).await;
    let panics = Waker::from(Arc::new(Panics));
    let counts = Arc::new(Counts::default());
    let mut closed_wait = Box::pin(socket.await_closed());
    let counting = Waker::from(Arc::clone(&counts));
    assert!(
        closed_wait
            .as_mut()
            .poll(&mut Context::from_waker(&counting))
            .is_pending()
    );
    let mut shutdown = Box::pin(selector.shutdown(HANG_LIMIT));
    let polled = shutdown.as_mut().poll(&mut Context::from_waker(&panics));
    assert!(polled.is_pending(), "the shutdown waits for the connection");

    let closed = catch_unwind(AssertUnwindSafe(|| socket.close()));

    assert!(
        closed.is_err(),
        "the waker's panic goes on to the close's caller"
    );
    assert!(
        counts.woken() >= 1,
        "the task waiting for the close was woken"
    );
    assert!(
        closed_wait
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    );
    peer.set_read_timeout(Some(HANG_LIMIT))
        .expect("a read timeout");
    assert_eq!(
        std::io::Read::read(&mut peer, &mut [0; 16]).expect("the peer reads the end"),
        0
    );
    let report = within(shutdown).await;
    assert_eq!((report.finished, report.cut), (1, 0));
}

/// A client session store that panics when rustls hands it a TLS 1.3 session ticket.
#[derive(Debug)]
struct PanickingStore;

impl ClientSessionStore for PanickingStore {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, _: Tls13ClientSessionValue) {
        panic!("a session store that panics");
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        None
    }
}

/// A TLS 1.3 session (server side through `server_selector`, client side through
/// `client_selector`) whose client's session store panics, and whose client holds the server's
/// session tickets unread in its socket.
async fn session_with_tickets_unread(
    server_selector: &SelectorManager,
    client_selector: &SelectorManager,
) -> (TlsSocket, TlsSocket) {
    let pki = Pki::generate();
    let listener = tcp_listener(server_selector).await;
    let server_config = pki.server_config().build().expect("server configuration");
    let mut client_config = (*rustls_client(&pki.ca)).clone();
    client_config.resumption = Resumption::store(Arc::new(PanickingStore));
    let client_config = TlsConfig::from_rustls(Arc::new(client_config));
    let (server, client) = pair(client_selector, &listener, &server_config, client_config).await;
    // The server's handshake ended with its tickets sent: they are on their way.
    within(async {
        loop {
            let mut byte = [MaybeUninit::new(0u8)];
            if let Ok(1) = client.with_sock_ref(|socket| socket.peek(&mut byte)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    (server, client)
}

/// Asserts that the server's next read fails (a truncation or a reset): the client's socket
/// is closed.
async fn server_sees_the_end(server: &mut TlsSocket) {
    let mut input = server
        .open_read_channel()
        .expect("the server's read channel");
    let read = within(input.read_available(&mut [0; 64])).await;
    assert!(read.is_err(), "the server sees the client's end: {read:?}");
}

/// The client's session store panics as the selector's close cuts the connection (the cut
/// takes in the session tickets the socket holds first). The connection is closed all the
/// same, and the panic goes on to the caller of the close. (Before, the cut stopped there: the
/// connection stayed open, its peer waiting, until the client's socket was dropped.)
#[tokio::test]
async fn a_session_store_that_panics_as_the_selectors_close_cuts_a_tls_session_leaves_it_closed() {
    let server_selector = SelectorManager::new();
    let client_selector = SelectorManager::new();
    let (mut server, client) =
        session_with_tickets_unread(&server_selector, &client_selector).await;

    let closed = catch_unwind(AssertUnwindSafe(|| client_selector.close()));

    assert!(
        closed.is_err(),
        "the store's panic goes on to the close's caller"
    );
    server_sees_the_end(&mut server).await;
    drop(client);
}

/// The client's session store panics as the client's own `close` takes in the session tickets
/// the socket holds (before its `close_notify`). The connection is reset all the same, and the
/// panic goes on to the caller of the close. (Before, the close stopped there: the connection
/// stayed open, its peer waiting, until the client's socket was dropped.)
#[tokio::test]
async fn a_session_store_that_panics_as_a_tls_socket_closes_leaves_it_closed() {
    let selector = SelectorManager::new();
    let (mut server, client) = session_with_tickets_unread(&selector, &selector).await;

    let closed = catch_unwind(AssertUnwindSafe(|| client.close()));

    assert!(
        closed.is_err(),
        "the store's panic goes on to the close's caller"
    );
    assert!(client.is_closed());
    server_sees_the_end(&mut server).await;
    // Another close finds it closed.
    client.close();
}

/// The client's session store panics as the selector's graceful shutdown cuts the connection
/// at the end of its grace period. The shutdown still closes it and returns, and the panic
/// goes on to its caller. (Before, the cut stopped there, and the shutdown waited for ever for
/// the connection to close.)
#[tokio::test]
async fn a_session_store_that_panics_as_a_graceful_shutdown_cuts_a_tls_session_ends_the_shutdown() {
    let server_selector = SelectorManager::new();
    let client_selector = SelectorManager::new();
    let (mut server, client) =
        session_with_tickets_unread(&server_selector, &client_selector).await;

    let shutdown = tokio::spawn({
        let selector = client_selector.clone();
        async move { selector.shutdown(Duration::ZERO).await }
    });
    let shutdown = within(shutdown).await;

    assert!(
        shutdown.is_err_and(|e| e.is_panic()),
        "the store's panic goes on to the shutdown's caller"
    );
    assert!(client_selector.is_closed());
    server_sees_the_end(&mut server).await;
    drop(client);
}

/// A task that panics while it holds a TLS socket whose client session store panics too, as
/// the socket's drop takes in the session tickets it holds: the task ends with its own panic
/// (the process goes on), and the connection is closed.
#[tokio::test]
async fn a_session_store_that_panics_as_a_panicking_task_drops_its_tls_socket_aborts_nothing() {
    let selector = SelectorManager::new();
    let (mut server, client) = session_with_tickets_unread(&selector, &selector).await;

    let task = tokio::spawn(async move {
        let _client = client;
        panic!("the task's own panic");
    });

    assert!(within(task).await.is_err_and(|e| e.is_panic()));
    server_sees_the_end(&mut server).await;
}
