//! Can a remote peer make the crates log at `info` or above at a rate it chooses?
//!
//! The rule (guarantees.md, guide section *Tracing*): what a client causes connection by
//! connection is at `debug`, or a `warn` for a listener's first; a server's log kept at `info`
//! cannot be filled by clients. Each test runs N hostile connections against a server written
//! the way the docs allow and counts the events at `info` or above seen on the test's thread
//! (a per-thread subscriber: the handlers and `accept` run on this thread).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::TempDir;
use net_tests::loopback::tcp_listener_with;
use net_tests::within;
use tracing::Level;

/// Hostile connections per test.
const N: usize = 8;

/// Records the level, target and message of every event of the workspace's crates.
struct Levels(Arc<Mutex<Vec<(Level, String, String)>>>);

impl tracing::Subscriber for Levels {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let target = event.metadata().target();
        if target.starts_with("net_") {
            let mut message = String::new();
            event.record(
                &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                    if field.name() == "message" {
                        message = format!("{value:?}");
                    }
                },
            );
            self.0
                .lock()
                .unwrap()
                .push((*event.metadata().level(), target.to_string(), message));
        }
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// Runs `body` on a current-thread runtime with [`Levels`] as this thread's subscriber; the
/// events at `info` or above that it logged.
fn loud_events_of(body: impl Future<Output = ()>) -> Vec<(Level, String, String)> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    {
        let _default = tracing::subscriber::set_default(Levels(Arc::clone(&seen)));
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(body);
    }
    let seen = seen.lock().unwrap();
    seen.iter()
        .filter(|(level, _, _)| *level <= Level::INFO)
        .cloned()
        .collect()
}

/// The TCP state of `socket` (Linux `TCP_INFO`'s `tcpi_state`; 7 is `TCP_CLOSE`).
#[allow(unsafe_code)]
fn tcp_state(socket: &net_sockets::Socket) -> u8 {
    socket
        .with_sock_ref(|sock| {
            use std::os::fd::AsRawFd;
            let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
            let rc = unsafe {
                libc::getsockopt(
                    sock.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_INFO,
                    (&raw mut info).cast(),
                    &mut len,
                )
            };
            assert_eq!(rc, 0, "{}", std::io::Error::last_os_error());
            Ok(info.tcpi_state)
        })
        .unwrap()
}

/// Waits (bounded: 5 s) until the kernel has taken the peer's reset of `socket`.
async fn until_reset_arrived(socket: &net_sockets::Socket) {
    let start = Instant::now();
    while tcp_state(socket) != 7 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the peer's reset never arrived"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// A handler that gives up on a client that reads nothing (these once logged a `warn` each)

/// How a handler gives up on a client that reads nothing, with a deadline of its own.
#[derive(Clone, Copy, Debug)]
enum GiveUp {
    /// `tokio::time::timeout` around the channel's `flush`.
    Flush,
    /// `tokio::time::timeout` around replies written with `write_fully` (no flush): the one
    /// that finds the buffer full waits to write it out.
    Writes,
    /// `tokio::time::timeout` around `AsyncWriteExt::flush` (tokio's traits).
    TraitFlush,
    /// A `tokio::select!` of the flush against a stop signal (a sleep here).
    Select,
    /// `tokio::time::timeout` around `flush_and_close`.
    FlushAndClose,
}

/// A server that bounds a reply's flush (or writes) with a deadline of its own
/// (`tokio::time::timeout`, as the guide does for reads, and as the channel's docs, *Dropped
/// writes*, allow: "a timeout"), or selects it against a stop signal, and ends the connection
/// when the client reads nothing in time. Each such client makes the dropped write channel log
/// `warn` ("dropped with N unflushed bytes; ... call flush_and_close"): the caller did flush,
/// and gave up on purpose, exactly as after a `socket_timeout` (`debug`) or a
/// `close_gracefully` dropped by the caller's deadline (no event). A client that reads nothing
/// sets the rate of warnings.
#[test]
fn a_flush_given_up_by_the_servers_own_deadline_does_not_warn_per_connection() {
    let mut too_loud = Vec::new();
    for way in [
        GiveUp::Flush,
        GiveUp::Writes,
        GiveUp::TraitFlush,
        GiveUp::Select,
        GiveUp::FlushAndClose,
    ] {
        let loud = loud_events_of(async {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(4096)).await;
            let mut peers = Vec::new();
            for _ in 0..N {
                let (socket, peer) =
                    net_tests::loopback::accepted_with_full_buffers(&listener).await;
                peers.push(peer);
                let mut connection = socket.connection().unwrap();
                let deadline = Duration::from_millis(20);
                let output = &mut connection.output;
                let gave_up = match way {
                    GiveUp::Flush => {
                        output.write_fully(b"a reply\n").await.unwrap();
                        tokio::time::timeout(deadline, output.flush())
                            .await
                            .is_err()
                    }
                    GiveUp::Writes => tokio::time::timeout(deadline, async {
                        // Bounded: 100 replies of 1000 bytes overfill the 8 KiB buffer.
                        for _ in 0..100 {
                            output.write_fully(&[b'x'; 1000]).await.unwrap();
                        }
                    })
                    .await
                    .is_err(),
                    GiveUp::TraitFlush => {
                        tokio::io::AsyncWriteExt::write_all(output, b"a reply\n")
                            .await
                            .unwrap();
                        tokio::time::timeout(deadline, tokio::io::AsyncWriteExt::flush(output))
                            .await
                            .is_err()
                    }
                    GiveUp::Select => {
                        output.write_fully(b"a reply\n").await.unwrap();
                        let stop = tokio::time::sleep(deadline);
                        tokio::select! {
                            flushed = output.flush() => panic!("flushed: {flushed:?}"),
                            () = stop => true,
                        }
                    }
                    GiveUp::FlushAndClose => {
                        output.write_fully(b"a reply\n").await.unwrap();
                        tokio::time::timeout(deadline, output.flush_and_close())
                            .await
                            .is_err()
                    }
                };
                assert!(gave_up, "{way:?}: the write or flush did not wait");
                // The handler gives up on this client: its connection is dropped.
                drop(connection);
            }
            selector.close();
        });
        if loud.len() > 1 {
            too_loud.push((way, loud.len(), loud[0].clone()));
        }
    }
    assert!(
        too_loud.is_empty(),
        "events at info or above for {N} clients that read nothing (way, count, first): \
         {too_loud:#?}"
    );
}

/// A relay written against tokio's traits (the docs: "works with `tokio::io::copy`"): each
/// connection's input is copied to its output. A client that sends a few bytes, then resets,
/// makes `copy` return `ConnectionReset`: from the read, with the bytes it wrote still in the
/// channel's buffer (tokio's `copy` flushes only when the reader waits, or at the end), or
/// from the flush it made when the read waited, which met the reset (what Linux gives here:
/// the bytes come before the reset is seen). Either way the handler returns the error and
/// drops the channel, which logs nothing above `debug`: not one event per hostile connection.
#[test]
fn a_relay_whose_client_resets_logs_nothing_loud() {
    let loud = loud_events_of(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let port = listener.port().unwrap();
        for _ in 0..N {
            let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let socket = within(listener.accept()).await.unwrap();
            std::io::Write::write_all(&mut client, b"hello, then a reset").unwrap();
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(client);
            until_reset_arrived(&socket).await;
            // The handler: a relay, its error returned (here: dropped with the connection).
            let mut connection = socket.connection().unwrap();
            let copied = within(tokio::io::copy(
                &mut connection.input,
                &mut connection.output,
            ))
            .await;
            let e = copied.expect_err("the client reset");
            assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e:?}");
            drop(connection);
        }
        selector.close();
    });
    assert!(
        loud.len() <= 1,
        "{} events at info or above for {N} clients that reset: {:#?}",
        loud.len(),
        loud.first()
    );
}

// ---------------------------------------------------------------------------------------------
// Other sites a client could reach

/// `dropped a connection that failed set-up` (warn, every time): connections reset before
/// `accept` on listeners whose set-up applies every option a reset socket could refuse
/// (`linger`, keep-alive times, `no_delay`), over TCP and Unix. None fails set-up.
#[test]
fn connections_reset_before_accept_never_fail_set_up() {
    let loud = loud_events_of(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| {
            b.linger(Duration::from_secs(1))
                .keep_alive_idle(Duration::from_secs(30))
                .keep_alive_interval(Duration::from_secs(5))
                .keep_alive_count(3)
                .no_delay(true)
                .receive_buffer_size(8192)
                .send_buffer_size(8192)
        })
        .await;
        let port = listener.port().unwrap();
        for _ in 0..N {
            let reset = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            socket2::SockRef::from(&reset)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(reset);
        }
        for _ in 0..N {
            let socket = within(listener.accept()).await.unwrap();
            assert!(tcp_state(&socket) == 7, "not reset before the accept");
        }

        let dir = TempDir::new("peer-logs");
        let path = dir.join("l.sock");
        let unix = a_socket(&selector)
            .tcp()
            .send_buffer_size(8192)
            .receive_buffer_size(8192)
            .bind(UnixSocketAddress::new(&path))
            .await
            .unwrap();
        for _ in 0..N {
            let mut gone = std::os::unix::net::UnixStream::connect(&path).unwrap();
            std::io::Write::write_all(&mut gone, b"x").unwrap();
            drop(gone);
            within(unix.accept()).await.unwrap();
        }
        selector.close();
    });
    assert!(loud.is_empty(), "{loud:#?}");
}

/// A graceful shutdown (grace 0) cuts handlers stuck in a flush to clients that read nothing:
/// the flush fails with the cut, which throws the buffer away with the failure; the drops log
/// nothing at `info` or above.
#[test]
fn a_shutdown_cutting_flushes_to_clients_that_read_nothing_logs_nothing_loud() {
    let loud = loud_events_of(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(4096)).await;
        let mut peers = Vec::new();
        let mut handlers = Vec::new();
        for _ in 0..N {
            let (socket, peer) = net_tests::loopback::accepted_with_full_buffers(&listener).await;
            peers.push(peer);
            handlers.push(tokio::spawn(async move {
                let mut connection = socket.connection().unwrap();
                connection.output.write_fully(b"a reply\n").await?;
                connection.output.flush().await?;
                Ok::<(), net_io::Error>(())
            }));
        }
        tokio::task::yield_now().await;
        within(listener.shutdown(Duration::ZERO)).await;
        for handler in handlers {
            let ended = within(handler).await.unwrap();
            assert!(ended.is_err(), "{ended:?}");
        }
        selector.close();
    });
    assert!(loud.is_empty(), "{loud:#?}");
}

/// `ByteReadChannel::copy_to` from a client that sends, then resets: the copy ends the
/// output short (its `cut_short`), which logs nothing loud though the output held bytes.
#[test]
fn copy_to_from_a_client_that_resets_logs_nothing_loud() {
    let loud = loud_events_of(async {
        let selector = SelectorManager::new();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let port = listener.port().unwrap();
        for _ in 0..N {
            let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let socket = within(listener.accept()).await.unwrap();
            std::io::Write::write_all(&mut client, b"hello, then a reset").unwrap();
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(client);
            until_reset_arrived(&socket).await;
            let mut connection = socket.connection().unwrap();
            let copied = within(connection.input.copy_to(&mut connection.output, u64::MAX)).await;
            assert!(copied.is_err(), "{copied:?}");
            drop(connection);
        }
        selector.close();
    });
    assert!(loud.is_empty(), "{loud:#?}");
}

/// The same over TLS: replies flushed under a deadline of the server's own to a TLS client
/// that reads nothing, until a flush does not finish in time; then the connection is dropped.
#[test]
fn a_tls_flush_given_up_by_the_servers_own_deadline_does_not_warn_per_connection() {
    let loud = loud_events_of(async {
        let selector = SelectorManager::new();
        let pki = net_tests::pki::Pki::generate();
        let listener = tcp_listener_with(&selector, |b| b.send_buffer_size(4096)).await;
        let mut clients = Vec::new();
        for _ in 0..N {
            let (mut server, client) = net_tests::tls::pair_of(&selector, &listener, &pki).await;
            client
                .with_sock_ref(|s| s.set_recv_buffer_size(4096))
                .unwrap();
            clients.push(client);
            let mut output = server.open_write_channel(false).unwrap();
            let mut gave_up = false;
            // Bounded: loopback's socket buffers hold a few MB at most.
            for _ in 0..10_000 {
                output.write_fully(&[b'x'; 1000]).await.unwrap();
                let flushed = tokio::time::timeout(Duration::from_millis(20), output.flush()).await;
                if flushed.is_err() {
                    gave_up = true;
                    break;
                }
                flushed.unwrap().unwrap();
            }
            assert!(gave_up, "no flush waited");
            drop(output);
            drop(server);
        }
        selector.close();
    });
    assert!(
        loud.len() <= 1,
        "{} events at info or above for {N} TLS clients that read nothing: {:#?}",
        loud.len(),
        loud.first()
    );
}
