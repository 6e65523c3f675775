//! Leaks, by the way a connection ends: each ending below, run many times, gives back the heap
//! memory, descriptors, tasks and tracing spans it held (the harness of `net_tests::leaks`: a
//! mark after a warm-up, after `N1` runs and after `N2` more; between the last two, no
//! descriptor or task more, and the live heap within a fixed slack). The endings here are those
//! the other sweeps (`lifecycles_leave_nothing.rs`, `abnormal_ends_leave_nothing.rs`,
//! `error_paths_leave_nothing.rs`) leave out: a socket dropped without `close` while another task
//! waits on its channel, reads and writes given up part-way and then dropped unclosed,
//! `socket_timeout` during a write, listeners closed with connections queued in their backlog,
//! the same endings over Unix stream sockets and over TLS, a client handshake with a peer that
//! speaks plain text, `connect_timeout`, a PROXY protocol listener dropped unclosed while
//! headers are read, connections of a busy-polling selector, operations that
//! end again and again on objects that live on (flushes into full buffers, timed-out reads,
//! Unix, TLS and UDP waits), the in-memory pipe's ends, a user's runtime that ends with
//! everything open, and the socket file of a Unix client bound to a path of its own (removed
//! however the client ends).
//!
//! Each run also waits (bounded) for the peer to see the end where the ending promises one, so
//! that a descriptor kept open shows as a hang as well as in the counts. A subscriber that keeps
//! each span (and 1 KiB of heap) until its last handle closes it, as `tracing-subscriber`'s
//! registry does, is installed: a connection's span left open shows in the heap.
//!
//! The only growth seen is rustls's session caches filling to their bound (256 sessions): the
//! first check of each TLS configuration fills them before it marks.
//!
//! This binary installs a counting global allocator (`stats_alloc`; the workspace forbids
//! `unsafe`): the counts are process-wide, so the file holds a single `#[test]`.
//! `LEAKS_ONLY=<part of a name>` runs only the matching checks; `LEAKS_SANITY=1` adds one that
//! leaks on purpose.

use std::alloc::System;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, Socket, Transport, UnixSocketAddress, a_socket};
use net_tests::TempDir;
use net_tests::leaks::{Leaks as Report, N1};
use net_tests::loopback::{accepted_with_full_buffers, never_accepting_listener};
use net_tests::pki::Pki;
use net_tls::{TlsConfig, TlsExt, TlsServerConfig, TlsSocket};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// Runs for the slower checks (a TLS handshake each) between the last two marks.
const TLS_RUNS: usize = 200;

struct Ctx {
    selector: SelectorManager,
    listener: ServerSocket,
    timing_out: ServerSocket,
    server_config: TlsServerConfig,
    client_config: TlsConfig,
    /// For a connection with no host name (Unix).
    named_client_config: TlsConfig,
    rustls_client: std::sync::Arc<tokio_rustls::rustls::ClientConfig>,
    dir: TempDir,
}

#[test]
fn every_ending_gives_back_what_it_held() {
    let spans = net_tests::leaks::count_spans();
    let runtime = net_tests::leaks::runtime();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let timing_out = a_socket(&selector)
            .tcp()
            .socket_timeout(Duration::from_millis(5))
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let pki = Pki::generate();
        let ctx = Ctx {
            selector,
            listener,
            timing_out,
            server_config: pki.server_config().build().unwrap(),
            client_config: pki.client_config().build().unwrap(),
            named_client_config: pki
                .client_config()
                .server_name("localhost")
                .build()
                .unwrap(),
            rustls_client: net_tests::tls::rustls_client(&pki.ca),
            dir: TempDir::new("endings"),
        };
        let mut report = Report::new(live);
        report.sanity_if_asked().await;
        tcp(&ctx, &mut report).await;
        unix(&ctx, &mut report).await;
        tls(&ctx, &mut report).await;
        others(&ctx, &mut report).await;
        long_lived(&ctx, &mut report).await;
        pipes(&mut report).await;
        runtime_ends(&ctx, &mut report).await;
        unix_client_files(&ctx, &mut report).await;
        eprintln!("spans open at the end: {}", spans.open());
        report.assert_none_left("endings");
    });
}

/// A connected pair of `listener`: (client, accepted).
async fn pair(ctx: &Ctx, listener: &ServerSocket) -> (Socket, Socket) {
    let client = a_socket(&ctx.selector)
        .tcp()
        .connect(listener.local_address())
        .await
        .unwrap();
    let server = listener.accept().await.unwrap();
    (client, server)
}

async fn tls_pair(ctx: &Ctx) -> (TlsSocket, TlsSocket) {
    net_tests::tls::pair(
        &ctx.selector,
        &ctx.listener,
        &ctx.server_config,
        ctx.client_config.clone(),
    )
    .await
}

/// Waits (bounded) until `peer`'s read sees the end (a clean one or an error): the descriptor
/// of the other side was released.
async fn end_seen<T: Transport>(mut peer: Socket<T>) {
    let mut input = peer.open_read_channel().unwrap();
    net_tests::within(async {
        while let Ok(Some(_)) = input.read_line(1 << 20, LineEnding::Default).await {}
    })
    .await;
}

/// The same for a tokio stream.
async fn raw_end_seen(mut peer: impl tokio::io::AsyncRead + Unpin) {
    let mut sink = vec![0u8; 64 * 1024];
    net_tests::within(async {
        loop {
            match peer.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(_) => continue,
            }
        }
    })
    .await;
}

/// Sets `SO_LINGER` 0 on `socket` and drops it: its peer is reset.
fn reset_socket<T: Transport>(socket: Socket<T>) {
    socket
        .with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
        .unwrap();
    drop(socket);
}

async fn tcp(ctx: &Ctx, report: &mut Report) {
    report
        .check(
            "tcp: dropped unclosed while another task reads, then the peer closes",
            |_| async {
                let (client, mut server) = pair(ctx, &ctx.listener).await;
                let mut sin = server.open_read_channel().unwrap();
                let reading = tokio::spawn(async move {
                    let _ = sin.read_line(64, LineEnding::Default).await;
                });
                tokio::task::yield_now().await;
                drop(server);
                client.close();
                reading.await.unwrap();
            },
        )
        .await;

    report
        .check(
            "tcp: dropped unclosed while another task reads, that task aborted",
            |_| async {
                let (client, mut server) = pair(ctx, &ctx.listener).await;
                let mut sin = server.open_read_channel().unwrap();
                let reading = tokio::spawn(async move {
                    let _ = sin.read_line(64, LineEnding::Default).await;
                });
                tokio::task::yield_now().await;
                drop(server);
                reading.abort();
                let _ = reading.await;
                end_seen(client).await;
            },
        )
        .await;

    report
        .check(
            "tcp: dropped unclosed while another task writes into full buffers, peer resets",
            |_| async {
                let (mut server, peer) = accepted_with_full_buffers(&ctx.listener).await;
                let mut sout = server.open_write_channel(false).unwrap();
                let writing = tokio::spawn(async move {
                    let _ = sout.write_fully(&[1u8; 200_000]).await;
                    let _ = sout.flush().await;
                });
                tokio::task::yield_now().await;
                drop(server);
                socket2::SockRef::from(&peer)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(peer);
                writing.await.unwrap();
            },
        )
        .await;

    report
        .check(
            "tcp: a write into full buffers given up part-way, all dropped unclosed",
            |_| async {
                let (mut server, peer) = accepted_with_full_buffers(&ctx.listener).await;
                let mut sout = server.open_write_channel(false).unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let _ = tokio::time::timeout(
                    Duration::from_millis(1),
                    sout.write_fully(&[1u8; 200_000]),
                )
                .await;
                sin.cancel();
                drop((sout, sin, server));
                // What the kernel still queues for the peer (a few MB, a window of 4 KiB) would
                // take it minutes to read: it resets.
                socket2::SockRef::from(&peer)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(peer);
            },
        )
        .await;

    report
        .check(
            "tcp: a read given up with half a line in, all dropped unclosed",
            |_| async {
                let (client, mut server) = pair(ctx, &ctx.listener).await;
                let mut cout = {
                    let mut client = client;
                    let out = client.open_write_channel(true).unwrap();
                    (client, out)
                };
                cout.1.write_fully(b"half a li").await.unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let r = tokio::time::timeout(
                    Duration::from_millis(2),
                    sin.read_line(64, LineEnding::Default),
                )
                .await;
                assert!(r.is_err(), "{r:?}");
                drop((sin, server));
                let (client, out) = cout;
                drop(out);
                end_seen(client).await;
            },
        )
        .await;

    report
        .check("tcp: socket_timeout during a write", |_| async {
            let (mut server, peer) = accepted_with_full_buffers(&ctx.timing_out).await;
            let mut sout = server.open_write_channel(false).unwrap();
            let r = sout.write_fully(&[1u8; 200_000]).await;
            assert!(matches!(r, Err(net_io::Error::Timeout)), "{r:?}");
            server.close();
            drop((sout, server, peer));
        })
        .await;

    report
        .check(
            "tcp: listener closed with connections queued in its backlog",
            |_| async {
                let listener = a_socket(&ctx.selector)
                    .tcp()
                    .backlog(8)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let port = listener.port().unwrap();
                let mut peers = Vec::new();
                for _ in 0..3 {
                    peers.push(
                        tokio::net::TcpStream::connect(("127.0.0.1", port))
                            .await
                            .unwrap(),
                    );
                }
                listener.close();
                drop(listener);
                for peer in peers {
                    raw_end_seen(peer).await;
                }
            },
        )
        .await;

    report
        .check(
            "tcp: listener dropped unclosed with connections queued, one accept waiting",
            |_| async {
                let listener = std::sync::Arc::new(
                    a_socket(&ctx.selector)
                        .tcp()
                        .max_connections(1)
                        .bind(("127.0.0.1", 0))
                        .await
                        .unwrap(),
                );
                let port = listener.port().unwrap();
                let first = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let accepted = listener.accept().await.unwrap();
                let second = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                // Over the cap: the next accept waits with the second one queued.
                let waiting = tokio::spawn({
                    let listener = listener.clone();
                    async move {
                        let _ = listener.accept().await;
                    }
                });
                tokio::task::yield_now().await;
                listener.close();
                waiting.await.unwrap();
                drop(listener);
                drop(accepted);
                raw_end_seen(first).await;
                raw_end_seen(second).await;
            },
        )
        .await;
}

async fn unix(ctx: &Ctx, report: &mut Report) {
    let path = ctx.dir.join("u.sock");
    let listener = a_socket(&ctx.selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let timing_path = ctx.dir.join("t.sock");
    let timing_out = a_socket(&ctx.selector)
        .tcp()
        .socket_timeout(Duration::from_millis(5))
        .bind(UnixSocketAddress::new(&timing_path))
        .await
        .unwrap();
    let (listener, timing_out) = (&listener, &timing_out);

    report
        .check("unix: the peer closes cleanly", |_| async {
            let (client, mut server) = pair(ctx, listener).await;
            client.close();
            let mut sin = server.open_read_channel().unwrap();
            let r = sin.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(r, None);
            server.close();
        })
        .await;

    report
        .check("unix: socket_timeout on an idle read", |_| async {
            let (client, mut server) = pair(ctx, timing_out).await;
            let mut sin = server.open_read_channel().unwrap();
            let r = sin.read_line(64, LineEnding::Default).await;
            assert!(matches!(r, Err(net_io::Error::Timeout)), "{r:?}");
            drop((sin, server));
            end_seen(client).await;
        })
        .await;

    report
        .check(
            "unix: a read given up, all dropped unclosed while the peer stays",
            |_| async {
                let (client, mut server) = pair(ctx, listener).await;
                let mut sin = server.open_read_channel().unwrap();
                let mut read = Box::pin(sin.read_line(64, LineEnding::Default));
                assert!(net_tests::pending_after_one_poll(read.as_mut()).await);
                drop(read);
                drop((sin, server));
                end_seen(client).await;
            },
        )
        .await;

    report
        .check(
            "unix: dropped unclosed while another task reads, then the peer closes",
            |_| async {
                let (client, mut server) = pair(ctx, listener).await;
                let mut sin = server.open_read_channel().unwrap();
                let reading = tokio::spawn(async move {
                    let _ = sin.read_line(64, LineEnding::Default).await;
                });
                tokio::task::yield_now().await;
                drop(server);
                client.close();
                reading.await.unwrap();
            },
        )
        .await;

    report
        .check("unix: close while another task writes", |_| async {
            let (client, mut server) = pair(ctx, listener).await;
            let mut sout = server.open_write_channel(false).unwrap();
            let writing = tokio::spawn(async move {
                // More than the kernel's buffers take: the write waits for the peer.
                let _ = sout.write_fully(&vec![1u8; 8 << 20]).await;
                let _ = sout.flush().await;
            });
            tokio::task::yield_now().await;
            server.close();
            writing.await.unwrap();
            end_seen(client).await;
        })
        .await;

    report
        .check(
            "unix: listener closed with connections queued in its backlog",
            |i| async move {
                let path = ctx.dir.join(&format!("q{i}.sock"));
                let listener = a_socket(&ctx.selector)
                    .tcp()
                    .bind(UnixSocketAddress::new(&path))
                    .await
                    .unwrap();
                let mut peers = Vec::new();
                for _ in 0..3 {
                    peers.push(tokio::net::UnixStream::connect(&path).await.unwrap());
                }
                listener.close();
                drop(listener);
                for peer in peers {
                    raw_end_seen(peer).await;
                }
                assert!(!path.exists(), "socket file {} left", path.display());
            },
        )
        .await;
}

async fn tls(ctx: &Ctx, report: &mut Report) {
    report
        // The first TLS check fills rustls's session caches (256 sessions) before its marks.
        .check_n(
            "tls: the peer resets while we read",
            300,
            TLS_RUNS,
            |_| async {
                let (mut server, client) = tls_pair(ctx).await;
                let mut sin = server.open_read_channel().unwrap();
                let reading = tokio::spawn(async move {
                    let r = sin.read_line(64, LineEnding::Default).await;
                    assert!(r.is_err(), "{r:?}");
                });
                tokio::task::yield_now().await;
                reset_socket(client);
                reading.await.unwrap();
                drop(server);
            },
        )
        .await;

    report
        .check_n(
            "tls: a read given up with half a line in, all dropped unclosed",
            N1,
            TLS_RUNS,
            |_| async {
                let (mut server, mut client) = tls_pair(ctx).await;
                let mut cout = client.open_write_channel(true).unwrap();
                cout.write_fully(b"half a li").await.unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let r = tokio::time::timeout(
                    Duration::from_millis(2),
                    sin.read_line(64, LineEnding::Default),
                )
                .await;
                assert!(r.is_err(), "{r:?}");
                drop((sin, server, cout));
                end_seen(client).await;
            },
        )
        .await;

    report
        .check_n(
            "tls: dropped unclosed while another task reads, then close_notify",
            N1,
            TLS_RUNS,
            |_| async {
                let (mut server, client) = tls_pair(ctx).await;
                let mut sin = server.open_read_channel().unwrap();
                let reading = tokio::spawn(async move {
                    let r = sin.read_line(64, LineEnding::Default).await;
                    assert!(matches!(r, Ok(None)), "{r:?}");
                });
                tokio::task::yield_now().await;
                drop(server);
                client.close();
                reading.await.unwrap();
            },
        )
        .await;

    report
        .check_n(
            "tls: dropped unclosed while another task reads, that task aborted",
            N1,
            TLS_RUNS,
            |_| async {
                let (mut server, client) = tls_pair(ctx).await;
                let mut sin = server.open_read_channel().unwrap();
                let reading = tokio::spawn(async move {
                    let _ = sin.read_line(64, LineEnding::Default).await;
                });
                tokio::task::yield_now().await;
                drop(server);
                reading.abort();
                let _ = reading.await;
                end_seen(client).await;
            },
        )
        .await;

    // 20 ms: the handshake's reads, which wait for a client in this process, are bounded too.
    let tls_timing_out = a_socket(&ctx.selector)
        .tcp()
        .socket_timeout(Duration::from_millis(20))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let tls_timing_out = &tls_timing_out;
    let timed_out = std::cell::Cell::new(0usize);
    let timed_out = &timed_out;
    report
        .check_n(
            "tls: socket_timeout during a write into full buffers",
            N1,
            TLS_RUNS,
            |_| async {
                let port = tls_timing_out.port().unwrap();
                let raw = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                socket2::SockRef::from(&raw)
                    .set_recv_buffer_size(4096)
                    .unwrap();
                raw.set_nonblocking(true).unwrap();
                let raw = tokio::net::TcpStream::from_std(raw).unwrap();
                let client = async {
                    let connector = tokio_rustls::TlsConnector::from(ctx.rustls_client.clone());
                    connector.connect(net_tests::tls::localhost(), raw).await
                };
                let server = async {
                    tls_timing_out
                        .accept()
                        .await
                        .unwrap()
                        .tls_server(&ctx.server_config)
                        .await
                };
                let (client, server) = tokio::join!(client, server);
                let (Ok(client), Ok(mut server)) = (client, server) else {
                    // The handshake itself met the timeout (a starved client).
                    return;
                };
                let mut sout = server.open_write_channel(false).unwrap();
                let r = sout.write_fully(&vec![1u8; 8 << 20]).await;
                assert!(matches!(r, Err(net_io::Error::Timeout)), "{r:?}");
                timed_out.set(timed_out.get() + 1);
                server.close();
                drop((sout, server, client));
            },
        )
        .await;
    assert!(
        timed_out.get() > 0 || std::env::var("LEAKS_ONLY").is_ok(),
        "no TLS write timed out: every handshake did"
    );

    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    let answering = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = plain.accept().await else {
                return;
            };
            drop(tokio::spawn(async move {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n").await;
                let mut sink = [0u8; 1024];
                while let Ok(n) = s.read(&mut sink).await {
                    if n == 0 {
                        break;
                    }
                }
            }));
        }
    });
    report
        .check_n(
            "tls: client handshake with a peer that speaks plain text",
            N1,
            TLS_RUNS,
            |_| async {
                let r = net_tests::tls::connect(
                    &ctx.selector,
                    "localhost",
                    plain_port,
                    ctx.client_config.clone(),
                )
                .await;
                assert!(r.is_err());
            },
        )
        .await;
    answering.abort();
    let _ = answering.await;
}

async fn others(ctx: &Ctx, report: &mut Report) {
    let full = never_accepting_listener(&ctx.selector).await;
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(s)) = tokio::time::timeout(
            Duration::from_millis(100),
            tokio::net::TcpStream::connect(full.local_address().to_string()),
        )
        .await
        {
            fillers.push(s);
        }
    }
    report
        .check("connect_timeout fires", |_| async {
            let r = a_socket(&ctx.selector)
                .tcp()
                .connect_timeout(Duration::from_millis(2))
                .connect(full.local_address())
                .await;
            assert!(r.is_err());
        })
        .await;
    drop(fillers);

    for mode in [
        net_sockets::ProxyProtocol::Required,
        net_sockets::ProxyProtocol::Optional,
    ] {
        report
            .check(
                &format!("PROXY listener dropped unclosed while headers are read, {mode:?}"),
                |_| async move {
                    let listener = a_socket(&ctx.selector)
                        .tcp()
                        .proxy_protocol(mode)
                        .bind(("127.0.0.1", 0))
                        .await
                        .unwrap();
                    let port = listener.port().unwrap();
                    let mut peers = Vec::new();
                    for i in 0..3 {
                        let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", port))
                            .await
                            .unwrap();
                        // Half a header, a whole one, or nothing.
                        let header = format!("PROXY TCP4 10.0.0.{i} 10.0.0.1 1000 80\r\n");
                        let sent = [&header[..10], &header[..], ""][i];
                        peer.write_all(sent.as_bytes()).await.unwrap();
                        peers.push(peer);
                    }
                    // An accept given up: it took the connections in and started their
                    // header reads (the whole header's connection may have been handed out).
                    let accepted =
                        tokio::time::timeout(Duration::from_millis(20), listener.accept()).await;
                    drop(listener);
                    drop(accepted);
                    // The peers see the end long before the 5 s proxy_header_timeout.
                    for peer in peers {
                        raw_end_seen(peer).await;
                    }
                },
            )
            .await;
    }

    let busy = SelectorManager::with_busy_poll(Duration::from_micros(50));
    let busy_listener = a_socket(&busy).tcp().bind(("127.0.0.1", 0)).await.unwrap();
    let (busy, busy_listener) = (&busy, &busy_listener);
    report
        .check(
            "busy-polling selector: lines, then each side dropped unclosed",
            |_| async {
                let mut client = a_socket(busy)
                    .tcp()
                    .connect(busy_listener.local_address())
                    .await
                    .unwrap();
                let mut server = busy_listener.accept().await.unwrap();
                let mut cout = client.open_write_channel(true).unwrap();
                let mut sin = server.open_read_channel().unwrap();
                cout.write_string_utf8("b\n").await.unwrap();
                let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("b"));
                drop((cout, client));
                assert_eq!(sin.read_line(64, LineEnding::Default).await.unwrap(), None);
                drop((sin, server));
            },
        )
        .await;
}

/// Polls `future` once (it must be pending) and drops it: a cancelled operation.
async fn cancelled<F: std::future::Future>(future: F) {
    tokio::pin!(future);
    assert!(net_tests::pending_after_one_poll(future.as_mut()).await);
}

/// Operations that end again and again (cancelled, timed out) on objects that live on: each
/// must give back what it took (a waker's place, a timer, an error's state).
async fn long_lived(ctx: &Ctx, report: &mut Report) {
    // A connection whose peer reads nothing: every flush waits.
    let (mut server, peer) = accepted_with_full_buffers(&ctx.listener).await;
    let sout = tokio::sync::Mutex::new(server.open_write_channel(false).unwrap());
    sout.lock().await.write_fully(b"held").await.unwrap();
    report
        .check("one connection, full buffers: flush cancelled", |_| async {
            cancelled(sout.lock().await.flush()).await;
        })
        .await;
    report
        .check(
            "one connection, full buffers: write and flush cancelled by a timeout",
            |_| async {
                let mut out = sout.lock().await;
                let r = tokio::time::timeout(Duration::from_micros(10), async {
                    out.write_fully(&[2u8; 100]).await?;
                    out.flush().await
                })
                .await;
                assert!(r.is_err(), "{r:?}");
            },
        )
        .await;
    report
        .check("one connection: shutdown_requested cancelled", |_| {
            cancelled(server.shutdown_requested())
        })
        .await;
    report
        .check(
            "one connection: shutdown_signal made and dropped",
            |_| async {
                drop(server.shutdown_signal());
            },
        )
        .await;
    sout.lock().await.cancel();
    drop((sout, server, peer));

    // A connection of a listener with a 5 ms socket_timeout, whose peer sends nothing.
    let peer = tokio::net::TcpStream::connect(ctx.timing_out.local_address().to_string())
        .await
        .unwrap();
    let mut quiet = ctx.timing_out.accept().await.unwrap();
    let qin = tokio::sync::Mutex::new(quiet.open_read_channel().unwrap());
    report
        .check("one connection: socket_timeout on each read", |_| async {
            let r = qin.lock().await.read_line(64, LineEnding::Default).await;
            assert!(matches!(r, Err(net_io::Error::Timeout)), "{r:?}");
        })
        .await;
    report
        .check("one connection: await_content cancelled", |_| async {
            // Pending, or `Timeout` at once when the timeout of the one given up before ran out
            // meanwhile (it runs on until a read completes).
            let r = net_tests::poll_at_most(qin.lock().await.await_content(1), 1).await;
            assert!(
                matches!(r, None | Some(Err(net_io::Error::Timeout))),
                "{r:?}"
            );
        })
        .await;
    drop((qin, quiet, peer));

    // The same over TLS: a session whose peer reads nothing.
    let (mut tserver, tclient) = tls_pair(ctx).await;
    let tout = tokio::sync::Mutex::new(tserver.open_write_channel(false).unwrap());
    {
        // Fill the kernel's buffers and the session's: a flush that waits.
        let mut out = tout.lock().await;
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                out.write_fully(&[3u8; 64 * 1024]).await?;
                out.flush().await?;
            }
            #[allow(unreachable_code)]
            Ok::<(), net_io::Error>(())
        })
        .await;
    }
    report
        .check(
            "one TLS connection, full buffers: flush cancelled",
            |_| async {
                cancelled(tout.lock().await.flush()).await;
            },
        )
        .await;
    tout.lock().await.cancel();
    drop((tout, tserver, tclient));

    // Unix.
    let path = ctx.dir.join("long.sock");
    let ulistener = a_socket(&ctx.selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let (uclient, mut userver) = pair(ctx, &ulistener).await;
    let uin = tokio::sync::Mutex::new(userver.open_read_channel().unwrap());
    report
        .check("one Unix connection: read_line cancelled", |_| async {
            cancelled(uin.lock().await.read_line(64, LineEnding::Default)).await;
        })
        .await;
    report
        .check("one Unix listener: accept cancelled", |_| {
            cancelled(ulistener.accept())
        })
        .await;
    drop((uin, userver, uclient, ulistener));

    // UDP.
    let udp = net_tests::loopback::udp_socket(&ctx.selector).await;
    report
        .check(
            "one UDP socket: incoming made, polled, dropped",
            |_| async {
                let mut incoming = udp.incoming();
                cancelled(std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(std::pin::Pin::new(&mut incoming), cx)
                }))
                .await;
            },
        )
        .await;
    report
        .check("one UDP socket: await_closed cancelled", |_| {
            cancelled(udp.await_closed())
        })
        .await;
    let connected = a_socket(&ctx.selector)
        .udp()
        .connect(udp.local_address())
        .await
        .unwrap();
    report
        .check("one connected UDP socket: receive cancelled", |_| {
            cancelled(connected.receive())
        })
        .await;
    drop((connected, udp));
}

/// The in-memory pipe's ends, each dropped while a task waits on the other.
async fn pipes(report: &mut Report) {
    report
        .check(
            "pipe: reader dropped while a task writes into the full pipe",
            |_| async {
                let (mut w, r) = net_io::ByteChannel::new(false);
                let writing = tokio::spawn(async move {
                    let r = w.write_fully(&vec![4u8; 256 * 1024]).await;
                    assert!(matches!(r, Err(net_io::Error::Cancelled)), "{r:?}");
                });
                tokio::task::yield_now().await;
                drop(r);
                writing.await.unwrap();
            },
        )
        .await;
    report
        .check(
            "pipe: writer dropped unflushed while a task reads",
            |_| async {
                let (mut w, mut r) = net_io::ByteChannel::new(false);
                let reading = tokio::spawn(async move {
                    let got = r.read_line(64, LineEnding::Default).await;
                    assert!(got.is_err(), "{got:?}");
                });
                tokio::task::yield_now().await;
                w.write_fully(b"unflushed").await.unwrap();
                drop(w);
                reading.await.unwrap();
            },
        )
        .await;
}

/// What a runtime of the user's own holds when it ends: a selector on it, a listener, a plain
/// and a TLS connection with a read waiting in a task of that runtime, and answers held back
/// for a peer that reads nothing. `outlive`: the handles are kept past the runtime's end and
/// dropped after it, on a thread that has no runtime; otherwise the runtime's end drops them
/// (in its tasks) or the block that made them does.
fn a_runtime_ends(server_config: TlsServerConfig, client_config: TlsConfig, outlive: bool) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let held = runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let client = a_socket(&selector)
            .tcp()
            .connect(listener.local_address())
            .await
            .unwrap();
        let mut server = listener.accept().await.unwrap();
        let mut sin = server.open_read_channel().unwrap();
        drop(tokio::spawn(async move {
            let _ = sin.read_line(64, LineEnding::Default).await;
        }));
        let (mut tserver, tclient) =
            net_tests::tls::pair(&selector, &listener, &server_config, client_config).await;
        let mut tin = tserver.open_read_channel().unwrap();
        drop(tokio::spawn(async move {
            let _ = tin.read_line(64, LineEnding::Default).await;
        }));
        // Answers held back for a peer that pipelined requests and reads nothing: a task
        // sends them as the socket drains.
        let (mut held, peer) = accepted_with_full_buffers(&listener).await;
        let mut peer_writes = peer.try_clone().unwrap();
        std::io::Write::write_all(&mut peer_writes, b"a\nb\nc\n").unwrap();
        let mut hin = held.open_read_channel().unwrap();
        let mut hout = held.open_write_channel(true).unwrap();
        let _ = hin.read_line(64, LineEnding::Default).await.unwrap();
        hout.write_string_utf8("A\n").await.unwrap();
        let _ = hin.read_line(64, LineEnding::Default).await.unwrap();
        hout.write_string_utf8("B\n").await.unwrap();
        let _ = hin.read_line(64, LineEnding::Default).await.unwrap();
        held.close();
        let handles = (selector, listener, client, server, tserver, tclient);
        (
            outlive.then_some(handles),
            (hin, hout, held, peer, peer_writes),
        )
    });
    drop(runtime);
    drop(held);
}

async fn runtime_ends(ctx: &Ctx, report: &mut Report) {
    for outlive in [true, false] {
        report
            .check_n(
                &format!("a user's runtime ends with everything open, handles outlive={outlive}"),
                N1,
                TLS_RUNS,
                |_| {
                    let (server_config, client_config) =
                        (ctx.server_config.clone(), ctx.client_config.clone());
                    async move {
                        tokio::task::spawn_blocking(move || {
                            a_runtime_ends(server_config, client_config, outlive)
                        })
                        .await
                        .unwrap();
                    }
                },
            )
            .await;
    }
}

/// How a Unix client bound to a path of its own (`local_address`) ends.
#[derive(Clone, Copy, Debug)]
enum FileEnd {
    Close,
    DropUnclosed,
    StreamDropped,
    TlsClosed,
    SelectorClosed,
    SelectorShutdown,
}

/// A Unix client bound to a socket file of its own gives the file back (removes it) however it
/// ends, as it gives back its descriptor.
async fn unix_client_files(ctx: &Ctx, report: &mut Report) {
    let path = ctx.dir.join("files.sock");
    let listener = a_socket(&ctx.selector)
        .tcp()
        .bind(UnixSocketAddress::new(&path))
        .await
        .unwrap();
    let (listener, path) = (&listener, &path);
    for end in [
        FileEnd::Close,
        FileEnd::DropUnclosed,
        FileEnd::StreamDropped,
        FileEnd::TlsClosed,
        FileEnd::SelectorClosed,
        FileEnd::SelectorShutdown,
    ] {
        // TLS: the client configuration's session cache (256 sessions) fills before the marks.
        let n1 = if matches!(end, FileEnd::TlsClosed) {
            300
        } else {
            N1
        };
        report
            .check_n(
                &format!("unix client with a socket file of its own: {end:?}"),
                n1,
                net_tests::leaks::N2,
                |i| async move {
                    let own = ctx.dir.join(&format!("client-{end:?}-{i}.sock"));
                    let selector = match end {
                        FileEnd::SelectorClosed | FileEnd::SelectorShutdown => {
                            Some(SelectorManager::new())
                        }
                        _ => None,
                    };
                    let client = a_socket(selector.as_ref().unwrap_or(&ctx.selector))
                        .tcp()
                        .local_address(UnixSocketAddress::new(&own))
                        .connect(UnixSocketAddress::new(path))
                        .await
                        .unwrap();
                    assert!(own.exists());
                    let server = listener.accept().await.unwrap();
                    match end {
                        FileEnd::Close => client.close(),
                        FileEnd::DropUnclosed => drop(client),
                        FileEnd::StreamDropped => drop(client.into_stream().unwrap()),
                        FileEnd::TlsClosed => {
                            let (c, s) = tokio::join!(
                                client.tls(ctx.named_client_config.clone()),
                                server.tls_server(&ctx.server_config)
                            );
                            c.unwrap().close();
                            drop(s);
                            assert!(!own.exists(), "socket file {} left", own.display());
                            return;
                        }
                        FileEnd::SelectorClosed => {
                            selector.as_ref().unwrap().close();
                            drop(client);
                        }
                        FileEnd::SelectorShutdown => {
                            selector.as_ref().unwrap().shutdown(Duration::ZERO).await;
                            drop(client);
                        }
                    }
                    drop((server, selector));
                    assert!(!own.exists(), "socket file {} left", own.display());
                },
            )
            .await;
    }
}
