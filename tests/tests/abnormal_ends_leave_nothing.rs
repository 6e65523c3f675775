//! Leaks after abnormal ends: memory, tasks and descriptors left behind by connections,
//! listeners, TLS sessions and datagram sockets that end in a cut, a reset, a timeout or a
//! dropped handshake rather than a clean close.
//!
//! As in `lifecycles_leave_nothing.rs`: every scenario runs a few lifecycles to warm up, then
//! `N1` more (the first mark) and `N2` more (the second mark); between the marks the live heap
//! bytes (a counting global allocator), the open descriptors (`/proc/self/fd`) and the
//! runtime's alive tasks must not grow by more than a small fixed slack. Each scenario repeats
//! one abnormal path deterministically: a listener's or a selector's shutdown that cuts at the
//! end of its grace period (readers, writers, held-back answers, TLS sessions pending), a peer
//! that resets with answers held back by coalescing, a TLS handshake that the peer drops
//! half-way, a PROXY protocol header that never comes, a connection that waits in the kernel
//! past `max_connections` when the listener closes, a datagram socket closed with a receive
//! pending.
//!
//! The counts are process-wide (`stats_alloc`; the workspace forbids `unsafe`), so the file
//! holds a single `#[test]`. `LEAKS_ONLY=<part of a name>` runs only the matching checks;
//! `LEAKS_SANITY=1` adds one that leaks on purpose (heap, a descriptor and a task), to see the
//! checks fail.

use std::alloc::System;
use std::future::Future;
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{SelectorManager, ServerSocket, a_socket};
use net_tests::leaks::{Leaks as Report, N2};
use net_tests::pki::Pki;
use net_tls::{TlsConfig, TlsExt, TlsServerConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

struct Ctx {
    selector: SelectorManager,
    dir: net_tests::TempDir,
    server_config: TlsServerConfig,
    client_config: TlsConfig,
}

#[test]
fn abnormal_ends_leave_nothing_behind() {
    // A span a connection leaves open shows in the heap counted.
    let _spans = net_tests::leaks::count_spans();
    // `LEAKS_CURRENT_THREAD=1`: the same on a current-thread runtime.
    let runtime = net_tests::leaks::runtime();
    runtime.block_on(async {
        let pki = Pki::generate();
        let ctx = Ctx {
            selector: SelectorManager::new(),
            dir: net_tests::TempDir::new("abnormal-ends"),
            server_config: pki.server_config().build().unwrap(),
            client_config: pki.client_config().build().unwrap(),
        };
        let mut report = Report::new(live);
        report.sanity_if_asked().await;
        run_shutdown_cuts(&ctx, &mut report).await;
        run_shutdowns_more(&ctx, &mut report).await;
        run_groups_and_upgrades(&ctx, &mut report).await;
        run_tls_writes_dropped(&ctx, &mut report).await;
        run_resets(&ctx, &mut report).await;
        run_dropped_handshakes(&ctx, &mut report).await;
        run_listener_ends(&ctx, &mut report).await;
        report.assert_none_left("abnormal ends");
    });
}

async fn listener(selector: &SelectorManager) -> ServerSocket {
    a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap()
}

/// Polls `future` once (it must be pending) and drops it: a cancelled operation.
async fn cancelled<F: Future>(future: F) {
    tokio::pin!(future);
    assert!(net_tests::pending_after_one_poll(future.as_mut()).await);
}

/// Shutdowns that cut what is left at the end of their grace period.
async fn run_shutdown_cuts(ctx: &Ctx, report: &mut Report) {
    report
        .check(
            "listener shutdown cuts readers at the end of the grace period",
            |_| async {
                let l = listener(&ctx.selector).await;
                let mut clients = Vec::new();
                let mut readers = Vec::new();
                for _ in 0..2 {
                    clients.push(
                        a_socket(&ctx.selector)
                            .tcp()
                            .connect(l.local_address())
                            .await
                            .unwrap(),
                    );
                    let mut server = l.accept().await.unwrap();
                    let mut sin = server.open_read_channel().unwrap();
                    // Never closes on its own: the shutdown cuts it.
                    readers.push(tokio::spawn(async move {
                        let r = sin.read_line(64, LineEnding::Default).await;
                        drop(server);
                        r.is_err()
                    }));
                }
                let report = l.shutdown(Duration::from_millis(5)).await;
                assert_eq!(report.cut, 2, "{report:?}");
                for r in readers {
                    assert!(r.await.unwrap());
                }
                drop(clients);
            },
        )
        .await;

    report
        .check(
            "listener shutdown cuts a writer into full buffers",
            |_| async {
                let l = listener(&ctx.selector).await;
                let (mut server, peer) = net_tests::loopback::accepted_with_full_buffers(&l).await;
                let mut sout = server.open_write_channel(false).unwrap();
                let writing = tokio::spawn(async move {
                    let _ = sout.write_fully(&[1u8; 100_000]).await;
                    let failed = sout.flush().await.is_err();
                    drop(server);
                    failed
                });
                tokio::task::yield_now().await;
                let report = l.shutdown(Duration::from_millis(5)).await;
                assert_eq!(report.cut, 1, "{report:?}");
                assert!(writing.await.unwrap());
                drop(peer);
            },
        )
        .await;

    report
        .check_n(
            "listener shutdown cuts a connection closed with answers held back",
            30,
            90,
            |_| async {
                use std::io::Write;
                let l = listener(&ctx.selector).await;
                let (mut server, mut peer) =
                    net_tests::loopback::accepted_with_full_buffers(&l).await;
                peer.write_all(b"a\nb\nc\n").unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let mut sout = server.open_write_channel(true).unwrap();
                let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("a"));
                sout.write_string_utf8("A\n").await.unwrap();
                let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("b"));
                sout.write_string_utf8("B\n").await.unwrap();
                let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("c"));
                // The reader waits: the held answers go to a task, then the close.
                cancelled(sin.read_line(64, LineEnding::Default)).await;
                server.close();
                drop((sin, sout, server));
                let report = l.shutdown(Duration::from_millis(5)).await;
                assert_eq!(report.cut, 1, "{report:?}");
                drop(peer);
            },
        )
        .await;

    report
        // A fresh session each time: rustls's session caches fill up to their bound (256) first.
        .check_n("listener shutdown cuts TLS sessions", 300, N2, |_| async {
            let l = listener(&ctx.selector).await;
            let port = l.port().unwrap();
            let accept = async {
                l.accept()
                    .await
                    .unwrap()
                    .tls_server(&ctx.server_config)
                    .await
                    .unwrap()
            };
            let connect = async {
                a_socket(&ctx.selector)
                    .tcp()
                    .connect(("localhost", port))
                    .await
                    .unwrap()
                    .tls(ctx.client_config.clone())
                    .await
                    .unwrap()
            };
            let (mut server, mut client) = tokio::join!(accept, connect);
            let mut sin = server.open_read_channel().unwrap();
            let reading = tokio::spawn(async move {
                let r = sin.read_line(64, LineEnding::Default).await;
                drop(server);
                r.is_err()
            });
            let report = l.shutdown(Duration::from_millis(5)).await;
            assert_eq!(report.cut, 1, "{report:?}");
            assert!(reading.await.unwrap());
            // The client sees a truncation, never a clean end.
            let mut cin = client.open_read_channel().unwrap();
            assert!(cin.read_line(64, LineEnding::Default).await.is_err());
            drop((cin, client));
        })
        .await;

    report
        .check(
            "Unix listener shutdown cuts a reader and a writer",
            |i| async move {
                let path = ctx.dir.join(&format!("u{i}.sock"));
                let l = a_socket(&ctx.selector)
                    .tcp()
                    .bind(net_sockets::UnixSocketAddress::new(&path))
                    .await
                    .unwrap();
                let client = a_socket(&ctx.selector)
                    .tcp()
                    .connect(net_sockets::UnixSocketAddress::new(&path))
                    .await
                    .unwrap();
                let mut server = l.accept().await.unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let mut sout = server.open_write_channel(false).unwrap();
                // The client reads nothing: the writer waits once the socket's buffer is full.
                let working = tokio::spawn(async move {
                    let wrote = async {
                        let _ = sout.write_fully(&[1u8; 1 << 20]).await;
                        sout.flush().await.is_err()
                    };
                    let (read, wrote) = tokio::join!(sin.read_line(64, LineEnding::Default), wrote);
                    drop(server);
                    read.is_err() && wrote
                });
                tokio::task::yield_now().await;
                let report = l.shutdown(Duration::from_millis(5)).await;
                assert_eq!(report.cut, 1, "{report:?}");
                assert!(working.await.unwrap());
                drop((client, l));
                assert!(!path.exists(), "socket file {} left", path.display());
            },
        )
        .await;

    report
        .check(
            "selector shutdown cuts pending accept, reads, writes and receives",
            |_| async {
                let selector = SelectorManager::new();
                let l = listener(&selector).await;
                let client = a_socket(&selector)
                    .tcp()
                    .connect(l.local_address())
                    .await
                    .unwrap();
                let mut server = l.accept().await.unwrap();
                let (mut stuck, peer) = net_tests::loopback::accepted_with_full_buffers(&l).await;
                let udp = net_tests::loopback::udp_socket(&selector).await;
                let mut sin = server.open_read_channel().unwrap();
                let mut sout = stuck.open_write_channel(false).unwrap();
                let reading = tokio::spawn(async move {
                    let r = sin.read_line(64, LineEnding::Default).await;
                    drop(server);
                    r.is_err()
                });
                let writing = tokio::spawn(async move {
                    let _ = sout.write_fully(&[1u8; 100_000]).await;
                    let failed = sout.flush().await.is_err();
                    drop(stuck);
                    failed
                });
                let receiving = tokio::spawn(async move { udp.receive().await.is_err() });
                let l = std::sync::Arc::new(l);
                let accepting = tokio::spawn({
                    let l = l.clone();
                    async move { l.accept().await.is_err() }
                });
                tokio::task::yield_now().await;
                let _ = selector.shutdown(Duration::from_millis(5)).await;
                assert!(reading.await.unwrap());
                assert!(writing.await.unwrap());
                assert!(receiving.await.unwrap());
                assert!(accepting.await.unwrap());
                drop((client, peer, l, selector));
            },
        )
        .await;

    report
        .check(
            "selector close with a connect and a TLS handshake pending",
            |_| async {
                let selector = SelectorManager::new();
                let l = listener(&selector).await;
                let port = l.port().unwrap();
                let client = a_socket(&selector)
                    .tcp()
                    .connect(("localhost", port))
                    .await
                    .unwrap();
                let _server = l.accept().await.unwrap();
                let config = ctx.client_config.clone();
                // The server never answers the ClientHello.
                let handshaking = tokio::spawn(async move { client.tls(config).await.is_err() });
                tokio::task::yield_now().await;
                selector.close();
                assert!(handshaking.await.unwrap());
                drop((l, selector));
            },
        )
        .await;
}

/// Shutdowns that end early: a dropped shutdown future, two shutdowns at once, connections
/// admitted but never accepted.
async fn run_shutdowns_more(ctx: &Ctx, report: &mut Report) {
    report
        .check(
            "listener shutdown future dropped, the connection closes later",
            |_| async {
                let l = listener(&ctx.selector).await;
                let client = a_socket(&ctx.selector)
                    .tcp()
                    .connect(l.local_address())
                    .await
                    .unwrap();
                let server = l.accept().await.unwrap();
                cancelled(l.shutdown(Duration::from_secs(5))).await;
                assert!(server.is_shutdown_requested());
                server.close();
                client.close();
                drop(l);
            },
        )
        .await;

    report
        .check(
            "listener and selector shutdowns at once, both cut",
            |_| async {
                let selector = SelectorManager::new();
                let l = listener(&selector).await;
                let client = a_socket(&selector)
                    .tcp()
                    .connect(l.local_address())
                    .await
                    .unwrap();
                let server = l.accept().await.unwrap();
                let (a, b) = tokio::join!(
                    l.shutdown(Duration::from_millis(5)),
                    selector.shutdown(Duration::from_millis(3))
                );
                assert!(a.cut + b.cut >= 1, "{a:?} {b:?}");
                assert!(server.is_closed());
                drop((client, server, l, selector));
            },
        )
        .await;

    report
        .check_n(
            "PROXY listener shutdown with admitted connections never accepted",
            30,
            90,
            |_| async {
                let l = a_socket(&ctx.selector)
                    .tcp()
                    .proxy_protocol(net_sockets::ProxyProtocol::Required)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let mut peers = Vec::new();
                for i in 0..3 {
                    let mut peer = tokio::net::TcpStream::connect(l.local_address().to_string())
                        .await
                        .unwrap();
                    let header = format!("PROXY TCP4 10.0.0.{i} 10.0.0.1 1000 80\r\n");
                    peer.write_all(header.as_bytes()).await.unwrap();
                    peers.push(peer);
                }
                // One accept hands out one; the others are admitted and wait in the listener.
                let first = l.accept().await.unwrap();
                let _ = tokio::time::timeout(Duration::from_millis(5), async {
                    let mut taken = Vec::new();
                    loop {
                        cancelled_or_taken(&l, &mut taken).await;
                    }
                })
                .await;
                let report = l.shutdown(Duration::from_millis(5)).await;
                assert!(report.cut >= 1, "{report:?}");
                for mut peer in peers {
                    let mut rest = Vec::new();
                    let _ = peer.read_to_end(&mut rest).await;
                }
                drop(first);
            },
        )
        .await;

    report
        // After "listener shutdown cuts TLS sessions": the session caches are full.
        .check("TLS peer resets with a write pending", |_| async {
            let l = listener(&ctx.selector).await;
            let port = l.port().unwrap();
            let accept = async {
                l.accept()
                    .await
                    .unwrap()
                    .tls_server(&ctx.server_config)
                    .await
                    .unwrap()
            };
            let connect = async {
                a_socket(&ctx.selector)
                    .tcp()
                    .receive_buffer_size(4096)
                    .connect(("localhost", port))
                    .await
                    .unwrap()
                    .tls(ctx.client_config.clone())
                    .await
                    .unwrap()
            };
            let (mut server, client) = tokio::join!(accept, connect);
            let mut sout = server.open_write_channel(false).unwrap();
            let writing = tokio::spawn(async move {
                let big = vec![7u8; 64 * 1024];
                for _ in 0..200 {
                    if sout.write_fully(&big).await.is_err() || sout.flush().await.is_err() {
                        drop(server);
                        return true;
                    }
                }
                false
            });
            tokio::task::yield_now().await;
            client
                .with_sock_ref(|s| s.set_linger(Some(Duration::ZERO)))
                .unwrap();
            drop(client);
            assert!(writing.await.unwrap());
            drop(l);
        })
        .await;
}

/// Ends that leave the group of a listener behind its connections: a listener dropped
/// unclosed while they live on, an `Incoming` stream that outlives its listener's close, a
/// STARTTLS upgrade whose peer resets with plaintext still unread.
async fn run_groups_and_upgrades(ctx: &Ctx, report: &mut Report) {
    report
        .check(
            "listener dropped unclosed, its connection closed later",
            |_| async {
                let l = listener(&ctx.selector).await;
                let client = a_socket(&ctx.selector)
                    .tcp()
                    .connect(l.local_address())
                    .await
                    .unwrap();
                let server = l.accept().await.unwrap();
                drop(l);
                let mut c = server.connection().unwrap();
                c.output.write_string_utf8("bye\n").await.unwrap();
                let mut cc = client.connection().unwrap();
                let leaving = async {
                    let line = cc.input.read_line(64, LineEnding::Default).await.unwrap();
                    assert_eq!(line.as_deref(), Some("bye"));
                    cc.close_gracefully(Duration::from_secs(5)).await
                };
                let (s, c) = tokio::join!(c.close_gracefully(Duration::from_secs(5)), leaving);
                s.unwrap();
                c.unwrap();
            },
        )
        .await;

    report
        .check(
            "incoming stream pending when its listener shuts down",
            |_| async {
                let l = listener(&ctx.selector).await;
                let mut incoming = l.incoming();
                let waiting = tokio::spawn(async move {
                    let item = net_tests::loopback::next_item(&mut incoming).await;
                    !matches!(item, Some(Ok(_)))
                });
                tokio::task::yield_now().await;
                let _ = l.shutdown(Duration::from_millis(5)).await;
                assert!(waiting.await.unwrap());
            },
        )
        .await;

    report
        .check(
            "STARTTLS: peer resets during the upgrade, plaintext unread",
            |_| async {
                let l = listener(&ctx.selector).await;
                let mut peer = tokio::net::TcpStream::connect(l.local_address().to_string())
                    .await
                    .unwrap();
                let server = l.accept().await.unwrap();
                let mut sc = server.connection().unwrap();
                peer.write_all(b"STARTTLS\nmore plaintext\n").await.unwrap();
                let line = sc.input.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("STARTTLS"));
                sc.output.write_string_utf8("OK\n").await.unwrap();
                let upgrading = tokio::spawn({
                    let config = ctx.server_config.clone();
                    async move { sc.tls_server(&config).await.is_err() }
                });
                let mut ok = [0u8; 3];
                peer.read_exact(&mut ok).await.unwrap();
                socket2::SockRef::from(&peer)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(peer);
                assert!(upgrading.await.unwrap());
                drop(l);
            },
        )
        .await;
}

/// Write futures dropped mid-way over TLS, then the session cut or dropped.
async fn run_tls_writes_dropped(ctx: &Ctx, report: &mut Report) {
    for close in [false, true] {
        report
            // After "listener shutdown cuts TLS sessions": the session caches are full.
            .check(
                &format!("TLS flush dropped mid-way into full buffers, close={close}"),
                |_| async move {
                    let l = listener(&ctx.selector).await;
                    let port = l.port().unwrap();
                    let accept = async {
                        l.accept()
                            .await
                            .unwrap()
                            .tls_server(&ctx.server_config)
                            .await
                            .unwrap()
                    };
                    let connect = async {
                        a_socket(&ctx.selector)
                            .tcp()
                            .receive_buffer_size(4096)
                            .connect(("localhost", port))
                            .await
                            .unwrap()
                            .tls(ctx.client_config.clone())
                            .await
                            .unwrap()
                    };
                    let (mut server, client) = tokio::join!(accept, connect);
                    let mut sout = server.open_write_channel(false).unwrap();
                    let big = vec![7u8; 64 * 1024];
                    // Bounded: the kernel's buffers take a few hundred KiB at most.
                    for _ in 0..64 {
                        sout.write_fully(&big).await.unwrap();
                        let flush = sout.flush();
                        tokio::pin!(flush);
                        if net_tests::pending_after_one_poll(flush.as_mut()).await {
                            break;
                        }
                    }
                    if close {
                        server.close();
                    }
                    drop((sout, server, client, l));
                },
            )
            .await;
    }
}

/// An `accept` polled once: a connection it hands out at once is kept, else it is dropped.
async fn cancelled_or_taken(l: &ServerSocket, taken: &mut Vec<net_sockets::Socket>) {
    let accept = l.accept();
    tokio::pin!(accept);
    let polled = std::future::poll_fn(|cx| std::task::Poll::Ready(accept.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(Ok(s)) = polled {
        taken.push(s);
    }
    tokio::task::yield_now().await;
}

/// Peers that reset.
async fn run_resets(ctx: &Ctx, report: &mut Report) {
    let l = listener(&ctx.selector).await;
    let l = &l;
    for close in [false, true] {
        report
            .check(
                &format!("peer resets with answers held back by coalescing, close={close}"),
                |_| async move {
                    let peer = tokio::net::TcpStream::connect(l.local_address().to_string())
                        .await
                        .unwrap();
                    let mut peer = peer;
                    let mut server = l.accept().await.unwrap();
                    peer.write_all(b"a\nb\nc\n").await.unwrap();
                    let mut sin = server.open_read_channel().unwrap();
                    let mut sout = server.open_write_channel(true).unwrap();
                    let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                    assert_eq!(line.as_deref(), Some("a"));
                    // Held back: more requests are pending.
                    sout.write_string_utf8("A\n").await.unwrap();
                    socket2::SockRef::from(&peer)
                        .set_linger(Some(Duration::ZERO))
                        .unwrap();
                    drop(peer);
                    // Reads what is left, then the reset (or an end: the reset may come first).
                    for _ in 0..4 {
                        match sin.read_line(64, LineEnding::Default).await {
                            Ok(Some(_)) => {
                                let _ = sout.write_string_utf8("X\n").await;
                            }
                            _ => break,
                        }
                    }
                    let _ = sout.flush().await;
                    if close {
                        server.close();
                    }
                    drop((sin, sout, server));
                },
            )
            .await;
    }

    report
        .check("peer resets during a writer's wait", |_| async move {
            let (mut server, peer) = net_tests::loopback::accepted_with_full_buffers(l).await;
            let mut sout = server.open_write_channel(false).unwrap();
            let writing = tokio::spawn(async move {
                let _ = sout.write_fully(&[1u8; 100_000]).await;
                sout.flush().await.is_err()
            });
            tokio::task::yield_now().await;
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer);
            assert!(writing.await.unwrap());
            drop(server);
        })
        .await;

    report
        .check(
            "peer resets during close_gracefully's drain",
            |_| async move {
                let (server, peer) = net_tests::loopback::accepted_with_full_buffers(l).await;
                let mut c = server.connection().unwrap();
                c.output.write_fully(&[1u8; 1000]).await.unwrap();
                let closing = tokio::spawn(c.close_gracefully(Duration::from_secs(5)));
                tokio::task::yield_now().await;
                socket2::SockRef::from(&peer)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
                drop(peer);
                assert!(closing.await.unwrap().is_err());
            },
        )
        .await;
}

/// TLS handshakes that the peer drops half-way.
async fn run_dropped_handshakes(ctx: &Ctx, report: &mut Report) {
    let l = listener(&ctx.selector).await;
    let l = &l;
    for reset in [false, true] {
        report
            .check(
                &format!("server handshake: client leaves after half a ClientHello, reset={reset}"),
                |_| async move {
                    let mut raw = tokio::net::TcpStream::connect(l.local_address().to_string())
                        .await
                        .unwrap();
                    // A handshake record's header announcing 512 bytes, and 10 of them.
                    raw.write_all(&[
                        0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0, 0x01, 0xfc, 3, 3, 0, 0, 0, 0,
                    ])
                    .await
                    .unwrap();
                    let server = l.accept().await.unwrap();
                    let handshaking = tokio::spawn({
                        let config = ctx.server_config.clone();
                        async move { server.tls_server(&config).await.is_err() }
                    });
                    tokio::task::yield_now().await;
                    if reset {
                        socket2::SockRef::from(&raw)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                    }
                    drop(raw);
                    assert!(handshaking.await.unwrap());
                },
            )
            .await;
        report
            .check(
                &format!("client handshake: server leaves after the ClientHello, reset={reset}"),
                |_| async move {
                    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    let port = raw.local_addr().unwrap().port();
                    let client = a_socket(&ctx.selector)
                        .tcp()
                        .connect(("localhost", port))
                        .await
                        .unwrap();
                    let handshaking = tokio::spawn({
                        let config = ctx.client_config.clone();
                        async move { client.tls(config).await.is_err() }
                    });
                    let (mut accepted, _) = raw.accept().await.unwrap();
                    let mut hello = [0u8; 5];
                    accepted.read_exact(&mut hello).await.unwrap();
                    if reset {
                        socket2::SockRef::from(&accepted)
                            .set_linger(Some(Duration::ZERO))
                            .unwrap();
                    }
                    drop((accepted, raw));
                    assert!(handshaking.await.unwrap());
                },
            )
            .await;
    }
}

/// Listeners that end connections before `accept` hands them out.
async fn run_listener_ends(ctx: &Ctx, report: &mut Report) {
    let timing_out = a_socket(&ctx.selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Required)
        .proxy_header_timeout(Duration::from_millis(5))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let timing_out = &timing_out;
    for half in [false, true] {
        report
            .check(
                &format!("PROXY header timing out, half a header sent={half}"),
                |_| async move {
                    let mut peer =
                        tokio::net::TcpStream::connect(timing_out.local_address().to_string())
                            .await
                            .unwrap();
                    if half {
                        peer.write_all(b"PROXY TCP4 10.0.0.1").await.unwrap();
                    }
                    let mut got = Vec::new();
                    tokio::select! {
                        _ = timing_out.accept() => panic!("a connection without a header was admitted"),
                        _ = peer.read_to_end(&mut got) => {}
                    }
                },
            )
            .await;
    }

    report
        .check(
            "max_connections: queued connections when the listener closes",
            |_| async move {
                let l = a_socket(&ctx.selector)
                    .tcp()
                    .max_connections(1)
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let first = a_socket(&ctx.selector)
                    .tcp()
                    .connect(l.local_address())
                    .await
                    .unwrap();
                let server = l.accept().await.unwrap();
                let mut waiting = Vec::new();
                for _ in 0..2 {
                    waiting.push(
                        tokio::net::TcpStream::connect(l.local_address().to_string())
                            .await
                            .unwrap(),
                    );
                }
                cancelled(l.accept()).await;
                let _ = tokio::time::timeout(Duration::from_millis(2), l.accept()).await;
                l.close();
                for mut w in waiting {
                    let mut got = Vec::new();
                    let _ = w.read_to_end(&mut got).await;
                }
                drop((first, server, l));
            },
        )
        .await;

    report
        .check(
            "datagram socket closed with a receive pending in another task",
            |_| async move {
                let udp = std::sync::Arc::new(net_tests::loopback::udp_socket(&ctx.selector).await);
                let receiving = tokio::spawn({
                    let udp = udp.clone();
                    async move { udp.receive().await.is_err() }
                });
                tokio::task::yield_now().await;
                udp.close();
                assert!(receiving.await.unwrap());
            },
        )
        .await;
}
