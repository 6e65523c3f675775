//! Unusual runtimes: a selector made in one runtime whose sockets are used by tasks of another,
//! and a runtime that ends (dropped, `shutdown_timeout`, `shutdown_background`) while those
//! tasks wait on its sockets.

use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{Error, SelectorManager, a_socket};
use net_tests::loopback::connected_pair;
use net_tests::{HANG_LIMIT, pending_after_one_poll, within};

/// How the selector's runtime ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Drop,
    ShutdownTimeout,
    ShutdownBackground,
}

fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    let mut builder = if multi_thread {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(2);
        builder
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    builder.enable_all().build().unwrap()
}

/// Runs `operation` in a task of the current runtime: once it is pending (its first poll
/// registered its wait), says so on `ready`; then awaits it.
fn pending_task<T: Send + 'static>(
    ready: &mpsc::Sender<&'static str>,
    name: &'static str,
    operation: impl Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let ready = ready.clone();
    tokio::spawn(async move {
        let mut operation = std::pin::pin!(operation);
        assert!(
            pending_after_one_poll(operation.as_mut()).await,
            "{name} did not wait"
        );
        ready.send(name).unwrap();
        operation.await
    })
}

/// The runtime of a `SelectorManager::new()` selector ends (each way, each flavour) while tasks
/// of another runtime (each flavour) wait on its sockets: a read under `socket_timeout` (whose
/// timer is the dying runtime's), a write (of the same socket) to a peer that reads nothing, an `accept`, a UDP
/// `receive` and a TLS handshake with a silent server (its timer the dying runtime's too). Each
/// fails with `SelectorClosed`, none panics ("A Tokio 1.x context was found, but it is being
/// shutdown") or hangs.
#[test]
fn operations_waiting_in_another_runtime_fail_with_selector_closed_when_the_selectors_runtime_ends()
{
    for end in [End::Drop, End::ShutdownTimeout, End::ShutdownBackground] {
        for dying_multi in [false, true] {
            for other_multi in [false, true] {
                let case = format!("{end:?}, dying multi {dying_multi}, other multi {other_multi}");
                let dying = runtime(dying_multi);
                let (selector, listener, client, server_side, udp) = dying.block_on(async {
                    let selector = SelectorManager::new();
                    let listener = a_socket(&selector)
                        .tcp()
                        .socket_timeout(Duration::from_secs(60))
                        .bind(("127.0.0.1", 0))
                        .await
                        .unwrap();
                    let (client, server_side) = connected_pair(&selector, &listener).await;
                    let udp = net_tests::loopback::udp_socket(&selector).await;
                    (selector, listener, client, server_side, udp)
                });
                let (tls_client, silent) =
                    dying.block_on(async { connected_pair(&selector, &listener).await });
                let config = net_tests::pki::TestCa::new("silent ca")
                    .client_config()
                    .server_name("localhost")
                    .handshake_timeout(Duration::from_secs(60))
                    .build()
                    .unwrap();
                let (ready, waiting) = mpsc::channel();
                let other = runtime(other_multi);
                let tasks = std::thread::spawn(move || {
                    other.block_on(async move {
                        let mut server_side = server_side;
                        let mut input = server_side.open_read_channel().unwrap();
                        let read = pending_task(&ready, "read", async move {
                            input.read_line(64, LineEnding::Default).await.map(|_| ())
                        });
                        // To the client, which reads nothing.
                        let mut output = server_side.open_write_channel(false).unwrap();
                        let write = {
                            let ready = ready.clone();
                            tokio::spawn(async move {
                                let chunk = vec![7u8; 64 * 1024];
                                for _ in 0..4096 {
                                    let mut write = std::pin::pin!(output.write_fully(&chunk));
                                    if pending_after_one_poll(write.as_mut()).await {
                                        ready.send("write").unwrap();
                                        return write.await;
                                    }
                                }
                                panic!("256 MiB written to a peer that reads nothing");
                            })
                        };
                        let accept = pending_task(&ready, "accept", async move {
                            listener.accept().await.map(|_| ())
                        });
                        let receive = pending_task(&ready, "receive", async move {
                            udp.receive().await.map(|_| ())
                        });
                        let handshake = pending_task(&ready, "handshake", async move {
                            net_tls::TlsExt::tls(tls_client, config).await.map(|_| ())
                        });
                        let read = within(read).await.unwrap().map_err(Error::from);
                        let write = within(write).await.unwrap().map_err(Error::from);
                        let accept = within(accept).await.unwrap();
                        let receive = within(receive).await.unwrap();
                        let handshake = within(handshake).await.unwrap();
                        (read, write, accept, receive, handshake, client, server_side)
                    })
                });
                for _ in 0..5 {
                    waiting
                        .recv_timeout(HANG_LIMIT)
                        .unwrap_or_else(|_| panic!("{case}: an operation never waited"));
                }
                match end {
                    End::Drop => drop(dying),
                    End::ShutdownTimeout => dying.shutdown_timeout(HANG_LIMIT),
                    End::ShutdownBackground => dying.shutdown_background(),
                }
                let (read, write, accept, receive, handshake, _client, _server_side) = tasks
                    .join()
                    .unwrap_or_else(|_| panic!("{case}: a task of the other runtime panicked"));
                assert!(
                    matches!(read, Err(Error::SelectorClosed)),
                    "{case}: {read:?}"
                );
                assert!(
                    matches!(write, Err(Error::SelectorClosed)),
                    "{case}: {write:?}"
                );
                assert!(
                    matches!(accept, Err(Error::SelectorClosed)),
                    "{case}: {accept:?}"
                );
                assert!(
                    matches!(receive, Err(Error::SelectorClosed)),
                    "{case}: {receive:?}"
                );
                assert!(
                    matches!(
                        handshake,
                        Err(net_tls::Error::Socket(Error::SelectorClosed))
                    ),
                    "{case}: {handshake:?}"
                );
                assert!(selector.is_closed(), "{case}");
                drop(silent);
            }
        }
    }
}

/// A connection of a `SelectorManager::new()` selector on a current-thread runtime, with
/// `linger(3 s)` and 16 KiB written and flushed to a peer that reads nothing and takes only a
/// few KiB: most of it still in our kernel, so the kernel's close of it waits for the peer, up
/// to the linger time. The connection and its channels stay held.
fn lingering_connection(
    runtime: &tokio::runtime::Runtime,
) -> (SelectorManager, net_sockets::Connection, socket2::Socket) {
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = net_tests::loopback::tcp_listener_with(&selector, |b| {
            b.linger(Duration::from_secs(3)).send_buffer_size(32 * 1024)
        })
        .await;
        let peer =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        peer.set_recv_buffer_size(4096).unwrap();
        peer.connect(
            &listener
                .local_address()
                .as_inet()
                .unwrap()
                .socket_addr()
                .into(),
        )
        .unwrap();
        let socket = within(listener.accept()).await.unwrap();
        let mut connection = socket.connection().unwrap();
        within(
            connection
                .output
                .write_fully(&net_tests::payload(16 * 1024)),
        )
        .await
        .unwrap();
        within(connection.output.flush()).await.unwrap();
        (selector, connection, peer)
    })
}

/// The end of a current-thread runtime closes its selector's connections; a lingering one's
/// close waits for the peer, which must happen off the thread ending the runtime, as
/// everywhere else (`linger` never blocks a runtime thread): `shutdown_background`, made to be
/// called from an async context (here a task of another runtime), returns at once, and
/// `shutdown_timeout` (on a plain thread) within its timeout, not after the linger time.
#[test]
fn ending_a_runtime_never_waits_for_a_lingering_close() {
    let other = runtime(false);
    for background in [true, false] {
        let dying = runtime(false);
        let (selector, connection, _peer) = lingering_connection(&dying);
        let ended = if background {
            other.block_on(async move {
                let started = std::time::Instant::now();
                dying.shutdown_background();
                started.elapsed()
            })
        } else {
            // (tokio refuses it in an async context.)
            let started = std::time::Instant::now();
            dying.shutdown_timeout(Duration::from_millis(100));
            started.elapsed()
        };
        assert!(
            ended < Duration::from_millis(1000),
            "background {background}: ending the runtime took {ended:?}"
        );
        assert!(selector.is_closed());
        drop(connection);
    }
}
