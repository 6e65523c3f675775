//! Leaks: memory, tasks and descriptors that outlive the connections that made them.
//!
//! Every scenario runs a few complete lifecycles to warm up, then `N1` more (the first mark)
//! and `N2` more (the second mark); between the marks the live heap bytes (a counting global
//! allocator), the open descriptors (`/proc/self/fd`) and the runtime's alive tasks must not
//! grow by more than a small fixed slack: a leak grows with the number of lifecycles.
//!
//! This binary installs a counting global allocator (`stats_alloc`; the workspace forbids
//! `unsafe`): the counts are process-wide, so the file holds a single `#[test]`.
//!
//! A regression sweep: nothing grew with the number of lifecycles when it was written. The
//! only growth seen is rustls's in-memory session caches filling up to their bound (256
//! sessions on the server; with client authentication each holds the client's chain, about
//! 1 KB), which the checks let fill before they measure.
//!
//! `LEAKS_ONLY=<part of a name>` runs only the matching checks; `LEAKS_SANITY=1`
//! adds one that leaks on purpose (heap, a descriptor and a task), to see the checks fail.

use std::alloc::System;
use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use net_io::{ByteChannel, LineEnding};
use net_sockets::{SelectorManager, ServerSocket, Socket, UnixSocketAddress, a_socket};
use net_tests::TempDir;
use net_tests::leaks::{Leaks as Report, N2, alive_tasks};
use net_tests::loopback::{RefusingPort, never_accepting_listener};
use net_tests::pki::Pki;
use net_tests::tls::{garbage_client, localhost, rustls_client};
use net_tls::{TlsConfig, TlsExt, TlsServerConfig};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::codec::LengthDelimitedCodec;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

struct Ctx {
    selector: SelectorManager,
    listener: ServerSocket,
    listener_uncoalesced: ServerSocket,
    pki: Pki,
    server_config: TlsServerConfig,
    client_config: TlsConfig,
    quick_timeout_config: TlsServerConfig,
    dir: TempDir,
}

#[test]
fn lifecycles_leave_nothing_behind() {
    // A span a connection leaves open shows in the heap counted.
    let _spans = net_tests::leaks::count_spans();
    // `LEAKS_CURRENT_THREAD=1`: the same on a current-thread runtime.
    let runtime = net_tests::leaks::runtime();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let listener = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let listener_uncoalesced = a_socket(&selector)
            .tcp()
            .coalesce_flushes(false)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let pki = Pki::generate();
        let server_config = pki.server_config().build().unwrap();
        let client_config = pki.client_config().build().unwrap();
        let quick_timeout_config = pki
            .server_config()
            .handshake_timeout(Duration::from_millis(5))
            .build()
            .unwrap();
        let ctx = Ctx {
            selector,
            listener,
            listener_uncoalesced,
            pki,
            server_config,
            client_config,
            quick_timeout_config,
            dir: TempDir::new("leaks"),
        };
        let mut report = Report::new(live);
        report.sanity_if_asked().await;
        run_all(&ctx, &mut report).await;
        run_more(&ctx, &mut report).await;
        run_long_lived(&ctx, &mut report).await;
        run_selectors(&ctx, &mut report).await;
        run_stuck_peers(&ctx, &mut report).await;
        run_proxy_listeners(&ctx, &mut report).await;
        run_tls_more(&ctx, &mut report).await;
        report.assert_none_left("lifecycles");
    });
}

/// A connected pair of `listener`: (client, accepted).
async fn pair(ctx: &Ctx, coalesce: bool) -> (Socket, Socket) {
    let listener = if coalesce {
        &ctx.listener
    } else {
        &ctx.listener_uncoalesced
    };
    let client = a_socket(&ctx.selector)
        .tcp()
        .coalesce_flushes(coalesce)
        .connect(listener.local_address())
        .await
        .unwrap();
    let server = listener.accept().await.unwrap();
    (client, server)
}

/// A line each way, then both closed.
async fn lines(ctx: &Ctx, auto_flush: bool, coalesce: bool) {
    let (mut client, mut server) = pair(ctx, coalesce).await;
    let mut cin = client.open_read_channel().unwrap();
    let mut cout = client.open_write_channel(auto_flush).unwrap();
    let mut sin = server.open_read_channel().unwrap();
    let mut sout = server.open_write_channel(auto_flush).unwrap();
    cout.write_string_utf8("hello\n").await.unwrap();
    cout.flush().await.unwrap();
    let line = sin.read_line(64, LineEnding::Default).await.unwrap();
    assert_eq!(line.as_deref(), Some("hello"));
    sout.write_string_utf8("world\n").await.unwrap();
    sout.flush().await.unwrap();
    let line = cin.read_line(64, LineEnding::Default).await.unwrap();
    assert_eq!(line.as_deref(), Some("world"));
    client.close();
    assert_eq!(sin.read_line(64, LineEnding::Default).await.unwrap(), None);
    server.close();
}

async fn tls_pair(ctx: &Ctx) -> (net_tls::TlsSocket, net_tls::TlsSocket) {
    let port = ctx.listener.port().unwrap();
    let accept = async {
        ctx.listener
            .accept()
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
    tokio::join!(accept, connect)
}

async fn run_all(ctx: &Ctx, report: &mut Report) {
    for (auto_flush, coalesce) in [(true, true), (false, true), (true, false), (false, false)] {
        report
            .check(
                &format!("tcp lines auto_flush={auto_flush} coalesce={coalesce}"),
                |_| lines(ctx, auto_flush, coalesce),
            )
            .await;
    }

    report
        .check("tcp drop without close", |_| async {
            let (mut client, mut server) = pair(ctx, true).await;
            let mut out = client.open_write_channel(false).unwrap();
            out.write_string_utf8("x\n").await.unwrap();
            out.flush().await.unwrap();
            let mut sin = server.open_read_channel().unwrap();
            let _ = sin.read_line(64, LineEnding::Default).await.unwrap();
            drop((out, client));
            assert_eq!(sin.read_line(64, LineEnding::Default).await.unwrap(), None);
            drop((sin, server));
        })
        .await;

    report
        .check("tcp close_gracefully", |_| async {
            let (client, server) = pair(ctx, true).await;
            let mut connection = client.connection().unwrap();
            connection.output.write_string_utf8("bye\n").await.unwrap();
            let mut sin = server.connection().unwrap();
            let closing = connection.close_gracefully(Duration::from_secs(5));
            let reading = async {
                let line = sin.input.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("bye"));
                assert_eq!(
                    sin.input.read_line(64, LineEnding::Default).await.unwrap(),
                    None
                );
                sin.close_gracefully(Duration::from_secs(5)).await.unwrap();
            };
            let (closed, ()) = tokio::join!(closing, reading);
            closed.unwrap();
        })
        .await;

    report
        .check("tcp peer reset while reading", |_| async {
            let port = ctx.listener.port().unwrap();
            let peer = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
            let mut server = ctx.listener.accept().await.unwrap();
            let mut sin = server.open_read_channel().unwrap();
            let mut sout = server.open_write_channel(true).unwrap();
            let reading = tokio::spawn(async move {
                let r = sin.read_line(64, LineEnding::Default).await;
                (r.is_err(), sin)
            });
            socket2::SockRef::from(&peer)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(peer);
            let (failed, sin) = reading.await.unwrap();
            assert!(failed);
            let _ = sout.write_string_utf8("late\n").await;
            drop((sin, sout, server));
        })
        .await;

    report
        .check("tcp peer half-close, we answer then close", |_| async {
            let port = ctx.listener.port().unwrap();
            let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut server = ctx.listener.accept().await.unwrap();
            let mut sin = server.open_read_channel().unwrap();
            let mut sout = server.open_write_channel(false).unwrap();
            peer.write_all(b"q\n").await.unwrap();
            peer.shutdown().await.unwrap();
            let line = sin.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("q"));
            assert_eq!(sin.read_line(64, LineEnding::Default).await.unwrap(), None);
            sout.write_string_utf8("a\n").await.unwrap();
            sout.flush_and_close().await.unwrap();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            assert_eq!(got, b"a\n");
            server.close();
        })
        .await;

    report
        .check("tcp into_stream", |_| async {
            let (client, server) = pair(ctx, true).await;
            let mut c = client.into_stream().unwrap();
            let mut s = server.into_stream().unwrap();
            c.write_all(b"ping").await.unwrap();
            c.flush().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(b"pong").await.unwrap();
            s.shutdown().await.unwrap();
            c.read_exact(&mut buf).await.unwrap();
            c.shutdown().await.unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).await.unwrap();
            s.read_to_end(&mut rest).await.unwrap();
            drop((c, s));
        })
        .await;

    report
        .check("tcp into_stream dropped mid-read", |_| async {
            let (client, server) = pair(ctx, true).await;
            let mut c = client.into_stream().unwrap();
            let s = server.into_stream().unwrap();
            let mut buf = [0u8; 4];
            let mut read = Box::pin(c.read(&mut buf));
            assert!(net_tests::pending_after_one_poll(read.as_mut()).await);
            drop(read);
            drop((c, s));
        })
        .await;

    report
        .check("frames over tcp", |_| async {
            let (mut client, mut server) = pair(ctx, true).await;
            let mut cout = client.open_write_channel(false).unwrap();
            let sin = server.open_read_channel().unwrap();
            let mut codec = LengthDelimitedCodec::new();
            for i in 0..3u8 {
                cout.write_frame(&mut codec, Bytes::from(vec![i; 100]))
                    .await
                    .unwrap();
            }
            cout.flush_and_close().await.unwrap();
            let mut frames = sin.into_frames(LengthDelimitedCodec::new());
            let mut n = 0;
            while let Some(frame) = std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut frames), cx)
            })
            .await
            {
                frame.unwrap();
                n += 1;
            }
            assert_eq!(n, 3);
            drop(frames);
            client.close();
            server.close();
        })
        .await;

    report
        .check("pipe with read_frame", |_| async {
            let (mut w, mut r) = ByteChannel::new(false);
            let mut codec = LengthDelimitedCodec::new();
            w.write_frame(&mut codec, Bytes::from_static(b"abc"))
                .await
                .unwrap();
            w.flush().await.unwrap();
            let f = r
                .read_frame(&mut LengthDelimitedCodec::new())
                .await
                .unwrap();
            assert_eq!(f.as_deref(), Some(&b"abc"[..]));
            let pending = tokio::spawn(async move {
                let _ = r.read_line(10, LineEnding::Default).await;
            });
            drop(w);
            pending.await.unwrap();
        })
        .await;

    report
        // 300 before the first mark: the server configuration's session cache (rustls's
        // default, the last 256 sessions) is full by then, for this check and the later ones.
        .check_n("tls session clean close", 300, N2, |_| async {
            let (mut server, mut client) = tls_pair(ctx).await;
            let mut sin = server.open_read_channel().unwrap();
            let mut sout = server.open_write_channel(true).unwrap();
            let mut cin = client.open_read_channel().unwrap();
            let mut cout = client.open_write_channel(true).unwrap();
            cout.write_string_utf8("hi\n").await.unwrap();
            let line = sin.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("hi"));
            sout.write_string_utf8("yo\n").await.unwrap();
            let line = cin.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("yo"));
            cout.flush_and_close().await.unwrap();
            assert_eq!(sin.read_line(64, LineEnding::Default).await.unwrap(), None);
            sout.flush_and_close().await.unwrap();
            assert_eq!(cin.read_line(64, LineEnding::Default).await.unwrap(), None);
            client.close();
            server.close();
        })
        .await;

    report
        .check("tls session dropped without close", |_| async {
            let (mut server, client) = tls_pair(ctx).await;
            let mut sin = server.open_read_channel().unwrap();
            drop(client);
            let _ = sin.read_line(64, LineEnding::Default).await;
            drop((sin, server));
        })
        .await;

    report
        .check("tls truncation by a raw client", |_| async {
            let port = ctx.listener.port().unwrap();
            let connector = tokio_rustls::TlsConnector::from(rustls_client(&ctx.pki.ca));
            let (server, client) = tokio::join!(
                async {
                    ctx.listener
                        .accept()
                        .await
                        .unwrap()
                        .tls_server(&ctx.server_config)
                        .await
                        .unwrap()
                },
                async {
                    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                        .await
                        .unwrap();
                    connector.connect(localhost(), tcp).await.unwrap()
                }
            );
            let mut server = server;
            let mut sin = server.open_read_channel().unwrap();
            let (tcp, _) = client.into_inner();
            drop(tcp);
            assert!(sin.read_line(64, LineEnding::Default).await.is_err());
            drop((sin, server));
        })
        .await;

    report
        .check("tls into_stream", |_| async {
            let (server, client) = tls_pair(ctx).await;
            let mut s = server.into_stream().unwrap();
            let mut c = client.into_stream().unwrap();
            c.write_all(b"ping").await.unwrap();
            c.flush().await.unwrap();
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.unwrap();
            s.shutdown().await.unwrap();
            let mut rest = Vec::new();
            c.read_to_end(&mut rest).await.unwrap();
            c.shutdown().await.unwrap();
            s.read_to_end(&mut rest).await.unwrap();
            drop((c, s));
        })
        .await;

    report
        .check("tls handshake: garbage ClientHello", |_| async {
            let port = ctx.listener.port().unwrap();
            let raw = garbage_client(port).await;
            let r = ctx
                .listener
                .accept()
                .await
                .unwrap()
                .tls_server(&ctx.server_config)
                .await;
            assert!(r.is_err());
            drop(raw);
        })
        .await;

    report
        .check("tls handshake: wrong host", |_| async {
            let port = ctx.listener.port().unwrap();
            let config = ctx
                .pki
                .client_config()
                .server_name("wrong.example")
                .build()
                .unwrap();
            let (server, client) = tokio::join!(
                async {
                    ctx.listener
                        .accept()
                        .await
                        .unwrap()
                        .tls_server(&ctx.server_config)
                        .await
                },
                async {
                    a_socket(&ctx.selector)
                        .tcp()
                        .connect(("127.0.0.1", port))
                        .await
                        .unwrap()
                        .tls(config)
                        .await
                }
            );
            assert!(server.is_err());
            assert!(client.is_err());
        })
        .await;

    report
        .check("tls handshake timeout", |_| async {
            let port = ctx.listener.port().unwrap();
            let raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let r = ctx
                .listener
                .accept()
                .await
                .unwrap()
                .tls_server(&ctx.quick_timeout_config)
                .await;
            assert!(
                matches!(r, Err(net_tls::Error::HandshakeTimeout(_))),
                "{r:?}"
            );
            drop(raw);
        })
        .await;

    report
        .check("tls handshake future dropped", |_| async {
            let port = ctx.listener.port().unwrap();
            let raw = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let server = ctx.listener.accept().await.unwrap();
            let mut handshake = Box::pin(server.tls_server(&ctx.server_config));
            assert!(net_tests::pending_after_one_poll(handshake.as_mut()).await);
            drop(handshake);
            drop(raw);
        })
        .await;

    report
        .check("starttls", |_| async {
            let (client, server) = pair(ctx, true).await;
            let mut cc = client.connection().unwrap();
            let mut sc = server.connection().unwrap();
            cc.output.write_string_utf8("STARTTLS\n").await.unwrap();
            cc.output.flush().await.unwrap();
            let line = sc.input.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("STARTTLS"));
            sc.output.write_string_utf8("OK\n").await.unwrap();
            let server_up = sc.tls_server(&ctx.server_config);
            let client_up = async {
                let line = cc.input.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("OK"));
                let config = ctx
                    .pki
                    .client_config()
                    .server_name("localhost")
                    .build()
                    .unwrap();
                cc.tls(config).await
            };
            let (s, c) = tokio::join!(server_up, client_up);
            let (mut s, mut c) = (s.unwrap(), c.unwrap());
            let mut cout = c.open_write_channel(true).unwrap();
            let mut sin = s.open_read_channel().unwrap();
            cout.write_string_utf8("in tls\n").await.unwrap();
            let line = sin.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("in tls"));
            c.close();
            s.close();
        })
        .await;

    report
        .check("unix stream sockets", |i| async move {
            let path = ctx.dir.join(&format!("s{i}.sock"));
            let listener = a_socket(&ctx.selector)
                .tcp()
                .bind(UnixSocketAddress::new(&path))
                .await
                .unwrap();
            let mut client = a_socket(&ctx.selector)
                .tcp()
                .connect(UnixSocketAddress::new(&path))
                .await
                .unwrap();
            let mut server = listener.accept().await.unwrap();
            let mut cout = client.open_write_channel(true).unwrap();
            let mut sin = server.open_read_channel().unwrap();
            cout.write_string_utf8("u\n").await.unwrap();
            let line = sin.read_line(64, LineEnding::Default).await.unwrap();
            assert_eq!(line.as_deref(), Some("u"));
            client.close();
            server.close();
            listener.close();
            drop(listener);
            assert!(!path.exists(), "socket file {} left", path.display());
        })
        .await;

    report
        .check("udp bind, send, close", |_| async {
            let a = a_socket(&ctx.selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let b = a_socket(&ctx.selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            a.send(net_sockets::Datagram::new(&b"d"[..], b.local_address()).unwrap())
                .await
                .unwrap();
            let d = b.receive().await.unwrap();
            assert_eq!(&d.packet[..], b"d");
            a.close();
            b.close();
        })
        .await;

    report
        .check(
            "listener bind/close, incoming dropped mid-accept",
            |_| async {
                let listener = a_socket(&ctx.selector)
                    .tcp()
                    .bind(("127.0.0.1", 0))
                    .await
                    .unwrap();
                let mut incoming = listener.incoming();
                let mut next = Box::pin(std::future::poll_fn(|cx| {
                    futures_core::Stream::poll_next(std::pin::Pin::new(&mut incoming), cx)
                }));
                assert!(net_tests::pending_after_one_poll(next.as_mut()).await);
                drop(next);
                drop(incoming);
                let mut accept = Box::pin(listener.accept());
                assert!(net_tests::pending_after_one_poll(accept.as_mut()).await);
                drop(accept);
                listener.close();
            },
        )
        .await;

    let refusing = RefusingPort::new();
    report
        .check("connect refused", |_| async {
            let r = a_socket(&ctx.selector)
                .tcp()
                .connect(refusing.address())
                .await;
            assert!(r.is_err());
        })
        .await;

    let port = ctx.listener.port().unwrap();
    report
        .check(
            "connect to localhost (both loopbacks), accepted and closed",
            |_| async {
                let client = a_socket(&ctx.selector)
                    .tcp()
                    .connect(("localhost", port))
                    .await
                    .unwrap();
                let server = ctx.listener.accept().await.unwrap();
                client.close();
                server.close();
            },
        )
        .await;

    let full = never_accepting_listener(&ctx.selector).await;
    // Fill its queue.
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
        .check("connect cancelled mid-way", |_| async {
            let connect = a_socket(&ctx.selector).tcp().connect(full.local_address());
            let _ = tokio::time::timeout(Duration::from_millis(1), connect).await;
        })
        .await;
    drop(fillers);
}

async fn run_more(ctx: &Ctx, report: &mut Report) {
    let timing_out = a_socket(&ctx.selector)
        .tcp()
        .socket_timeout(Duration::from_millis(5))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let tport = timing_out.port().unwrap();
    report
        .check("socket_timeout on an idle read", |_| async {
            let peer = tokio::net::TcpStream::connect(("127.0.0.1", tport))
                .await
                .unwrap();
            let mut server = timing_out.accept().await.unwrap();
            let mut sin = server.open_read_channel().unwrap();
            let r = sin.read_line(64, LineEnding::Default).await;
            assert!(matches!(r, Err(net_io::Error::Timeout)), "{r:?}");
            drop((sin, server, peer));
        })
        .await;

    report
        .check("socket_timeout on an idle TLS read", |_| async {
            let connect = async {
                a_socket(&ctx.selector)
                    .tcp()
                    .connect(("localhost", tport))
                    .await
                    .unwrap()
                    .tls(ctx.client_config.clone())
                    .await
            };
            let accept = async {
                timing_out
                    .accept()
                    .await
                    .unwrap()
                    .tls_server(&ctx.server_config)
                    .await
            };
            let (client, server) = tokio::join!(connect, accept);
            // The 5 ms timeout covers the handshake's reads too: a client slower than that
            // (a loaded machine, a debug build) ends the handshake with `Timeout` instead, a
            // lifecycle all the same (each side's failure must leave nothing either).
            match server {
                Ok(mut server) => {
                    let mut sin = server.open_read_channel().unwrap();
                    let r = sin.read_line(64, LineEnding::Default).await;
                    assert!(r.is_err(), "{r:?}");
                    drop((sin, server, client));
                }
                Err(e) => {
                    assert!(
                        matches!(e, net_tls::Error::Socket(net_sockets::Error::Timeout)),
                        "{e:?}"
                    );
                    drop(client);
                }
            }
        })
        .await;

    report
        .check("close while another task reads", |_| async {
            let (client, mut server) = pair(ctx, true).await;
            let mut sin = server.open_read_channel().unwrap();
            let reading =
                tokio::spawn(async move { sin.read_line(64, LineEnding::Default).await.is_err() });
            tokio::task::yield_now().await;
            server.close();
            assert!(reading.await.unwrap());
            drop(client);
        })
        .await;

    report
        .check(
            "close while another task writes into full buffers",
            |_| async {
                let (mut server, peer) =
                    net_tests::loopback::accepted_with_full_buffers(&ctx.listener).await;
                let mut sout = server.open_write_channel(false).unwrap();
                let writing = tokio::spawn(async move {
                    let _ = sout.write_fully(&[1u8; 200_000]).await;
                    sout.flush().await.is_err()
                });
                tokio::task::yield_now().await;
                server.close();
                assert!(writing.await.unwrap());
                drop(peer);
            },
        )
        .await;

    report
        .check("close_gracefully to a peer that reads nothing", |_| async {
            let (server, peer) =
                net_tests::loopback::accepted_with_full_buffers(&ctx.listener).await;
            let mut c = server.connection().unwrap();
            c.output.write_fully(&[1u8; 1000]).await.unwrap();
            let r = c.close_gracefully(Duration::from_millis(2)).await;
            assert!(r.is_err());
            drop(peer);
        })
        .await;

    report
        .check(
            "held-back answers at close (pipelined requests)",
            |_| async {
                let port = ctx.listener.port().unwrap();
                let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let mut server = ctx.listener.accept().await.unwrap();
                peer.write_all(b"a\nb\nc\n").await.unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let mut sout = server.open_write_channel(true).unwrap();
                let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("a"));
                // Held back: more requests are pending.
                sout.write_string_utf8("A\n").await.unwrap();
                server.close();
                let mut got = Vec::new();
                let _ = peer.read_to_end(&mut got).await;
                drop((sin, sout));
            },
        )
        .await;

    report
        .check(
            "held-back answers, channels dropped without close",
            |_| async {
                let port = ctx.listener.port().unwrap();
                let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", port))
                    .await
                    .unwrap();
                let mut server = ctx.listener.accept().await.unwrap();
                peer.write_all(b"a\nb\nc\n").await.unwrap();
                let mut sin = server.open_read_channel().unwrap();
                let mut sout = server.open_write_channel(true).unwrap();
                let line = sin.read_line(64, LineEnding::Default).await.unwrap();
                assert_eq!(line.as_deref(), Some("a"));
                sout.write_string_utf8("A\n").await.unwrap();
                drop((sin, sout, server));
                let mut got = Vec::new();
                let _ = peer.read_to_end(&mut got).await;
            },
        )
        .await;

    let capped = a_socket(&ctx.selector)
        .tcp()
        .max_connections_per_ip(1)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let cport = capped.port().unwrap();
    let capped = &capped;
    report
        .check("per-ip caps, many client addresses", |i| async move {
            let source =
                std::net::SocketAddr::from(([127, 0, (i / 250) as u8 + 1, (i % 250) as u8 + 2], 0));
            let client = a_socket(&ctx.selector)
                .tcp()
                .local_address(source)
                .connect(("127.0.0.1", cport))
                .await
                .unwrap();
            let second = a_socket(&ctx.selector)
                .tcp()
                .local_address(source)
                .connect(("127.0.0.1", cport))
                .await
                .unwrap();
            let server = capped.accept().await.unwrap();
            let mut second = second;
            let mut sin = second.open_read_channel().unwrap();
            // The second is refused (closed) by the cap.
            tokio::select! {
                _ = capped.accept() => panic!("the cap admitted a second connection"),
                _ = sin.read_line(64, LineEnding::Default) => {}
            }
            drop((sin, second));
            server.close();
            client.close();
        })
        .await;

    let proxied = a_socket(&ctx.selector)
        .tcp()
        .proxy_protocol(net_sockets::ProxyProtocol::Required)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let pport = proxied.port().unwrap();
    let proxied = &proxied;
    report
        .check("PROXY v1 headers from many sources", |i| async move {
            let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", pport))
                .await
                .unwrap();
            let header = format!(
                "PROXY TCP4 10.{}.{}.{} 10.0.0.1 {} 80\r\n",
                i / 65536 % 256,
                i / 256 % 256,
                i % 256,
                1000 + i
            );
            peer.write_all(header.as_bytes()).await.unwrap();
            let server = proxied.accept().await.unwrap();
            assert!(server.proxy_address().is_some());
            server.close();
            drop(peer);
        })
        .await;

    report
        .check("PROXY bad headers", |_| async {
            let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", pport))
                .await
                .unwrap();
            peer.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
            let mut got = Vec::new();
            tokio::select! {
                _ = proxied.accept() => panic!("a connection without a header was admitted"),
                _ = peer.read_to_end(&mut got) => {}
            }
        })
        .await;

    report
        .check("shutdown_signal polled and dropped", |_| async {
            let (client, server) = pair(ctx, true).await;
            let signal = server.shutdown_signal();
            for _ in 0..50 {
                let mut requested = Box::pin(signal.requested());
                assert!(net_tests::pending_after_one_poll(requested.as_mut()).await);
            }
            let mut requested = Box::pin(server.shutdown_requested());
            assert!(net_tests::pending_after_one_poll(requested.as_mut()).await);
            drop(requested);
            drop(signal);
            client.close();
            server.close();
        })
        .await;

    report
        .check("listener shutdown with an open connection", |_| async {
            let listener = a_socket(&ctx.selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let client = a_socket(&ctx.selector)
                .tcp()
                .connect(listener.local_address())
                .await
                .unwrap();
            let server = listener.accept().await.unwrap();
            let serving = tokio::spawn(async move {
                server.shutdown_requested().await;
                server.close();
            });
            let _ = listener.shutdown(Duration::from_secs(5)).await;
            serving.await.unwrap();
            client.close();
        })
        .await;

    report
        .check("selector made and closed", |_| async {
            let selector = SelectorManager::new();
            let l = a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let c = a_socket(&selector)
                .tcp()
                .connect(l.local_address())
                .await
                .unwrap();
            selector.close();
            drop((c, l, selector));
        })
        .await;

    report
        .check("selector shutdown", |_| async {
            let selector = SelectorManager::new();
            let l = a_socket(&selector)
                .tcp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let c = a_socket(&selector)
                .tcp()
                .connect(l.local_address())
                .await
                .unwrap();
            let s = l.accept().await.unwrap();
            let _ = selector.shutdown(Duration::from_millis(5)).await;
            drop((c, s, l, selector));
        })
        .await;

    report
        .check("udp connected, incoming dropped mid-receive", |_| async {
            let a = a_socket(&ctx.selector)
                .udp()
                .bind(("127.0.0.1", 0))
                .await
                .unwrap();
            let b = a_socket(&ctx.selector)
                .udp()
                .connect(a.local_address())
                .await
                .unwrap();
            let mut incoming = a.incoming();
            let mut next = Box::pin(std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut incoming), cx)
            }));
            assert!(net_tests::pending_after_one_poll(next.as_mut()).await);
            drop(next);
            drop(incoming);
            let mut receive = Box::pin(b.receive());
            assert!(net_tests::pending_after_one_poll(receive.as_mut()).await);
            drop(receive);
            a.close();
            b.close();
        })
        .await;

    report
        .check("tls close_gracefully", |_| async {
            let (server, client) = tls_pair(ctx).await;
            let sc = server.connection().unwrap();
            let mut cc = client.connection().unwrap();
            let closing = sc.close_gracefully(Duration::from_secs(5));
            let reading = async {
                assert_eq!(
                    cc.input.read_line(64, LineEnding::Default).await.unwrap(),
                    None
                );
                cc.close_gracefully(Duration::from_secs(5)).await.unwrap();
            };
            let (r, ()) = tokio::join!(closing, reading);
            r.unwrap();
        })
        .await;

    report
        .check(
            "tls session clean close, long (session caches full)",
            |_| async {
                let (server, client) = tls_pair(ctx).await;
                client.close();
                server.close();
            },
        )
        .await;
}

/// Polls `future` once (it must be pending) and drops it: a cancelled operation.
async fn cancelled<F: Future>(future: F) {
    tokio::pin!(future);
    assert!(net_tests::pending_after_one_poll(future.as_mut()).await);
}

/// Operations cancelled again and again on objects that live on: each must give back what it
/// took when dropped.
async fn run_long_lived(ctx: &Ctx, report: &mut Report) {
    let listener = a_socket(&ctx.selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    report
        .check("one listener: accept cancelled", |_| {
            cancelled(listener.accept())
        })
        .await;
    report
        .check("one listener: incoming made, polled, dropped", |_| async {
            let mut incoming = listener.incoming();
            cancelled(std::future::poll_fn(|cx| {
                futures_core::Stream::poll_next(std::pin::Pin::new(&mut incoming), cx)
            }))
            .await;
        })
        .await;
    report
        .check("one listener: await_closed cancelled", |_| {
            cancelled(listener.await_closed())
        })
        .await;

    let (mut client, mut server) = pair(ctx, true).await;
    let sin = tokio::sync::Mutex::new(server.open_read_channel().unwrap());
    let sout = tokio::sync::Mutex::new(server.open_write_channel(true).unwrap());
    let cin = tokio::sync::Mutex::new(client.open_read_channel().unwrap());
    let cout = tokio::sync::Mutex::new(client.open_write_channel(false).unwrap());
    report
        .check("one connection: read_line cancelled", |_| async {
            cancelled(sin.lock().await.read_line(64, LineEnding::Default)).await;
        })
        .await;
    report
        .check("one connection: await_closed cancelled", |_| {
            cancelled(server.await_closed())
        })
        .await;
    report
        .check(
            "one connection: request/answer round trips (coalescing)",
            |_| async {
                cout.lock().await.write_string_utf8("r\n").await.unwrap();
                cout.lock().await.flush().await.unwrap();
                let line = sin
                    .lock()
                    .await
                    .read_line(64, LineEnding::Default)
                    .await
                    .unwrap();
                assert_eq!(line.as_deref(), Some("r"));
                sout.lock().await.write_string_utf8("a\n").await.unwrap();
                let line = cin
                    .lock()
                    .await
                    .read_line(64, LineEnding::Default)
                    .await
                    .unwrap();
                assert_eq!(line.as_deref(), Some("a"));
            },
        )
        .await;
    report
        .check(
            "one connection: pipelined requests, answers held back",
            |_| async {
                cout.lock()
                    .await
                    .write_string_utf8("r1\nr2\n")
                    .await
                    .unwrap();
                cout.lock().await.flush().await.unwrap();
                for _ in 0..2 {
                    let _ = sin
                        .lock()
                        .await
                        .read_line(64, LineEnding::Default)
                        .await
                        .unwrap()
                        .unwrap();
                    sout.lock().await.write_string_utf8("a\n").await.unwrap();
                }
                for _ in 0..2 {
                    cin.lock()
                        .await
                        .read_line(64, LineEnding::Default)
                        .await
                        .unwrap()
                        .unwrap();
                }
            },
        )
        .await;
    drop((sin, sout, cin, cout));
    client.close();
    server.close();

    let (client, server) = pair(ctx, true).await;
    let cs = tokio::sync::Mutex::new(client.into_stream().unwrap());
    let ss = tokio::sync::Mutex::new(server.into_stream().unwrap());
    report
        .check("one stream: read cancelled", |_| async {
            let mut buf = [0u8; 8];
            cancelled(ss.lock().await.read(&mut buf)).await;
        })
        .await;
    report
        .check("one stream: round trips", |_| async {
            cs.lock().await.write_all(b"q").await.unwrap();
            cs.lock().await.flush().await.unwrap();
            let mut buf = [0u8; 1];
            ss.lock().await.read_exact(&mut buf).await.unwrap();
            ss.lock().await.write_all(b"a").await.unwrap();
            ss.lock().await.flush().await.unwrap();
            cs.lock().await.read_exact(&mut buf).await.unwrap();
        })
        .await;
    drop((cs, ss));

    let (mut tserver, mut tclient) = tls_pair(ctx).await;
    let tsin = tokio::sync::Mutex::new(tserver.open_read_channel().unwrap());
    let tsout = tokio::sync::Mutex::new(tserver.open_write_channel(true).unwrap());
    let tcin = tokio::sync::Mutex::new(tclient.open_read_channel().unwrap());
    let tcout = tokio::sync::Mutex::new(tclient.open_write_channel(true).unwrap());
    report
        .check("one TLS connection: read_line cancelled", |_| async {
            cancelled(tsin.lock().await.read_line(64, LineEnding::Default)).await;
        })
        .await;
    report
        .check("one TLS connection: round trips", |_| async {
            tcout.lock().await.write_string_utf8("r\n").await.unwrap();
            let line = tsin
                .lock()
                .await
                .read_line(64, LineEnding::Default)
                .await
                .unwrap();
            assert_eq!(line.as_deref(), Some("r"));
            tsout.lock().await.write_string_utf8("a\n").await.unwrap();
            let line = tcin
                .lock()
                .await
                .read_line(64, LineEnding::Default)
                .await
                .unwrap();
            assert_eq!(line.as_deref(), Some("a"));
        })
        .await;
    drop((tsin, tsout, tcin, tcout));
    tclient.close();
    tserver.close();

    let (tserver, tclient) = tls_pair(ctx).await;
    let ts = tokio::sync::Mutex::new(tserver.into_stream().unwrap());
    let tc = tokio::sync::Mutex::new(tclient.into_stream().unwrap());
    report
        .check("one TLS stream: read cancelled", |_| async {
            let mut buf = [0u8; 8];
            cancelled(ts.lock().await.read(&mut buf)).await;
        })
        .await;
    report
        .check("one TLS stream: round trips", |_| async {
            tc.lock().await.write_all(b"q").await.unwrap();
            tc.lock().await.flush().await.unwrap();
            let mut buf = [0u8; 1];
            ts.lock().await.read_exact(&mut buf).await.unwrap();
            ts.lock().await.write_all(b"a").await.unwrap();
            ts.lock().await.flush().await.unwrap();
            tc.lock().await.read_exact(&mut buf).await.unwrap();
        })
        .await;
    drop((ts, tc));

    let udp = a_socket(&ctx.selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    report
        .check("one UDP socket: receive cancelled", |_| {
            cancelled(udp.receive())
        })
        .await;
    let other = a_socket(&ctx.selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    report
        .check("one UDP socket: datagrams", |_| async {
            other
                .send(net_sockets::Datagram::new(&b"x"[..], udp.local_address()).unwrap())
                .await
                .unwrap();
            udp.receive().await.unwrap();
        })
        .await;

    let (w, r) = ByteChannel::new(false);
    let (w, r) = (tokio::sync::Mutex::new(w), tokio::sync::Mutex::new(r));
    report
        .check("one pipe: read cancelled", |_| async {
            cancelled(r.lock().await.read_line(64, LineEnding::Default)).await;
        })
        .await;
    report
        .check("one pipe: frames", |_| async {
            let mut codec = LengthDelimitedCodec::new();
            w.lock()
                .await
                .write_frame(&mut codec, Bytes::from_static(b"abc"))
                .await
                .unwrap();
            w.lock().await.flush().await.unwrap();
            r.lock()
                .await
                .read_frame(&mut LengthDelimitedCodec::new())
                .await
                .unwrap()
                .unwrap();
        })
        .await;
}

async fn selector_round(selector: &SelectorManager) -> (Socket, Socket, ServerSocket) {
    let l = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let c = a_socket(selector)
        .tcp()
        .connect(l.local_address())
        .await
        .unwrap();
    let s = l.accept().await.unwrap();
    (c, s, l)
}

/// Selectors made and ended, with their own runtime or busy polling, closed or only dropped.
async fn run_selectors(_ctx: &Ctx, report: &mut Report) {
    report
        .check("selector with its own runtime, closed", |_| async {
            let selector = SelectorManager::builder()
                .worker_threads(1)
                .build()
                .unwrap();
            let (c, s, l) = selector_round(&selector).await;
            selector.close();
            drop((c, s, l, selector));
        })
        .await;
    report
        .check(
            "selector with its own runtime, dropped unclosed",
            |_| async {
                let selector = SelectorManager::builder()
                    .worker_threads(1)
                    .build()
                    .unwrap();
                let (c, s, l) = selector_round(&selector).await;
                drop((c, s, l, selector));
            },
        )
        .await;
    report
        .check("selector on this runtime, dropped unclosed", |_| async {
            let selector = SelectorManager::new();
            let (c, s, l) = selector_round(&selector).await;
            drop((c, s, l, selector));
        })
        .await;
    report
        .check("selector with busy polling, closed", |_| async {
            let selector = SelectorManager::with_busy_poll(Duration::from_micros(50));
            let (c, s, l) = selector_round(&selector).await;
            selector.close();
            drop((c, s, l, selector));
        })
        .await;
    report
        .check("selector with busy polling, dropped unclosed", |_| async {
            let selector = SelectorManager::with_busy_poll(Duration::from_micros(50));
            let (c, s, l) = selector_round(&selector).await;
            drop((c, s, l, selector));
        })
        .await;
}

/// Our answers held back (coalescing) for a peer that sends two requests and reads nothing:
/// the kernel's buffers are full, so what was held back waits in a task (the reader's wait
/// hands it over; `then_close` closes, otherwise everything is dropped).
async fn stuck_answers(listener: &ServerSocket, then_close: bool) -> std::net::TcpStream {
    use std::io::Write;
    let (mut server, mut peer) = net_tests::loopback::accepted_with_full_buffers(listener).await;
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
    // The reader waits: the held answers go to a task.
    cancelled(sin.read_line(64, LineEnding::Default)).await;
    if then_close {
        server.close();
    }
    drop((sin, sout, server));
    peer
}

async fn run_stuck_peers(ctx: &Ctx, report: &mut Report) {
    // Short: every lifecycle of the two checks that use it waits this long (nothing else in
    // them waits: the peer's lines are in before they are read, the answers are held).
    let timing_out = a_socket(&ctx.selector)
        .tcp()
        .socket_timeout(Duration::from_millis(20))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let timing_out = &timing_out;
    let stuck = std::cell::Cell::new(0);
    let stuck = &stuck;
    for then_close in [false, true] {
        report
            .check_n(
                &format!(
                    "held answers for a peer that reads nothing, socket_timeout, close={then_close}"
                ),
                30,
                90,
                |_| async move {
                    let before = alive_tasks();
                    let peer = stuck_answers(timing_out, then_close).await;
                    // The task that sends the held answers gives up after the socket timeout
                    // (and resets), though the peer is still there.
                    let deadline = Instant::now() + Duration::from_secs(2);
                    while alive_tasks() > before {
                        if Instant::now() > deadline {
                            stuck.set(stuck.get() + 1);
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    drop(peer);
                },
            )
            .await;
        if stuck.get() > 0 {
            report.failures.push(format!(
                "held answers, socket_timeout, close={then_close}: {} connections still open 2 s after their socket timeout",
                stuck.get()
            ));
            eprintln!("{}", report.failures.last().unwrap());
        }
        stuck.set(0);
        report
            .check_n(
                &format!(
                    "held answers for a peer that reads nothing then leaves, close={then_close}"
                ),
                30,
                90,
                |_| async move {
                    let peer = stuck_answers(&ctx.listener, then_close).await;
                    tokio::task::yield_now().await;
                    drop(peer);
                },
            )
            .await;
    }

    let lingering = a_socket(&ctx.selector)
        .tcp()
        .linger(Duration::from_secs(1))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let lingering = &lingering;
    report
        .check("linger: connection closed", |_| async move {
            let mut peer = tokio::net::TcpStream::connect(lingering.local_address().to_string())
                .await
                .unwrap();
            let mut server = lingering.accept().await.unwrap();
            let mut sout = server.open_write_channel(true).unwrap();
            sout.write_string_utf8("x\n").await.unwrap();
            server.close();
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            drop(sout);
        })
        .await;

    let refusing = RefusingPort::new();
    let refused_at = refusing.address();
    report
        .check(
            "connect refused with connect_timeout and socket_timeout",
            |_| async move {
                let r = a_socket(&ctx.selector)
                    .tcp()
                    .connect_timeout(Duration::from_secs(5))
                    .socket_timeout(Duration::from_secs(5))
                    .connect(refused_at)
                    .await;
                assert!(r.is_err());
            },
        )
        .await;

    // Each run waits out the 100 ms socket timeout: four at a time, each with a listener of its
    // own (so that each server times out on its own client), 4 x (20 + 15 + 50) lifecycles, 200
    // of them between the last marks as in `check`, in a third of the time.
    let mut timing_out_each = Vec::new();
    for _ in 0..4 {
        timing_out_each.push(
            a_socket(&ctx.selector)
                .tcp()
                .socket_timeout(Duration::from_millis(100))
                .bind(("127.0.0.1", 0))
                .await
                .unwrap(),
        );
    }
    let timing_out_each = &timing_out_each;
    report
        .check_n(
            "TLS write to a peer that reads nothing, socket_timeout (4 at a time)",
            15,
            50,
            |_| async move {
                tokio::join!(
                    tls_write_to_a_peer_that_reads_nothing(ctx, &timing_out_each[0]),
                    tls_write_to_a_peer_that_reads_nothing(ctx, &timing_out_each[1]),
                    tls_write_to_a_peer_that_reads_nothing(ctx, &timing_out_each[2]),
                    tls_write_to_a_peer_that_reads_nothing(ctx, &timing_out_each[3]),
                );
            },
        )
        .await;
}

/// A TLS server on `listener` (whose socket timeout is 100 ms) writes 64 KiB at a time to a
/// client that reads nothing, until a write or flush fails.
async fn tls_write_to_a_peer_that_reads_nothing(ctx: &Ctx, listener: &ServerSocket) {
    let connect = async {
        a_socket(&ctx.selector)
            .tcp()
            .receive_buffer_size(4096)
            .connect(("localhost", listener.port().unwrap()))
            .await
            .unwrap()
            .tls(ctx.client_config.clone())
            .await
    };
    let accept = async {
        listener
            .accept()
            .await
            .unwrap()
            .tls_server(&ctx.server_config)
            .await
    };
    let (client, server) = tokio::join!(connect, accept);
    // The socket timeout covers the handshake's reads too: on a loaded machine
    // the client may be slower than that, a lifecycle that ends there.
    let mut server = match server {
        Ok(server) => server,
        Err(e) => {
            assert!(
                matches!(e, net_tls::Error::Socket(net_sockets::Error::Timeout)),
                "{e:?}"
            );
            return;
        }
    };
    let mut sout = server.open_write_channel(false).unwrap();
    let big = vec![7u8; 64 * 1024];
    let mut failed = false;
    for _ in 0..200 {
        if sout.write_fully(&big).await.is_err() || sout.flush().await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed);
    drop((sout, server, client));
}

/// PROXY protocol listeners closed while connections wait for their header, or wait in the
/// listener with their header read, for an `accept` that no longer comes.
async fn run_proxy_listeners(ctx: &Ctx, report: &mut Report) {
    for (silent, mode) in [
        (true, net_sockets::ProxyProtocol::Required),
        (true, net_sockets::ProxyProtocol::Optional),
        (false, net_sockets::ProxyProtocol::Required),
    ] {
        report
            .check_n(
                &format!("PROXY listener closed, silent={silent} {mode:?}"),
                50,
                150,
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
                        if !silent {
                            let header = format!("PROXY TCP4 10.0.0.{i} 10.0.0.1 1000 80\r\n");
                            peer.write_all(header.as_bytes()).await.unwrap();
                        }
                        peers.push(peer);
                    }
                    // One accept: it takes the connections in and starts their header reads.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(20), listener.accept()).await;
                    listener.close();
                    drop(listener);
                    for mut peer in peers {
                        let mut rest = Vec::new();
                        let _ = peer.read_to_end(&mut rest).await;
                    }
                },
            )
            .await;
    }
}

/// TLS paths the first sweep did not take: mutual TLS refused and accepted, STARTTLS that
/// fails, TLS over Unix sockets, adopted sockets.
async fn run_tls_more(ctx: &Ctx, report: &mut Report) {
    let mutual = ctx
        .pki
        .server
        .mutual_tls_server_config(&ctx.pki.ca)
        .build()
        .unwrap();
    let with_cert = ctx
        .pki
        .client
        .client_certificate(ctx.pki.client_config())
        .build()
        .unwrap();
    let port = ctx.listener.port().unwrap();
    for has_cert in [false, true] {
        let mutual = &mutual;
        let config = if has_cert {
            with_cert.clone()
        } else {
            ctx.client_config.clone()
        };
        let config = &config;
        report
            // 300 before the first mark: rustls's server session cache (256 sessions, each
            // with the client's certificate chain: some 1 KB each) is full by then.
            .check_n(
                &format!("mutual TLS, client certificate: {has_cert}"),
                300,
                N2,
                |_| async move {
                    let (server, client) = tokio::join!(
                        async {
                            ctx.listener
                                .accept()
                                .await
                                .unwrap()
                                .tls_server(mutual)
                                .await
                        },
                        async {
                            let client = a_socket(&ctx.selector)
                                .tcp()
                                .connect(("localhost", port))
                                .await
                                .unwrap()
                                .tls(config.clone())
                                .await;
                            // TLS 1.3: the client learns of a refusal at its first read.
                            match client {
                                Ok(c) if has_cert => (true, Some(c)),
                                Ok(mut c) => {
                                    let mut cin = c.open_read_channel().unwrap();
                                    let r = cin.read_line(64, LineEnding::Default).await;
                                    (r.is_ok(), Some(c))
                                }
                                Err(_) => (false, None),
                            }
                        }
                    );
                    assert_eq!(server.is_ok(), has_cert);
                    drop((server, client));
                },
            )
            .await;
    }

    report
        .check(
            "STARTTLS, client refuses the server's certificate",
            |_| async {
                let (client, server) = pair(ctx, true).await;
                let cc = client.connection().unwrap();
                let sc = server.connection().unwrap();
                let config = ctx
                    .pki
                    .client_config()
                    .server_name("wrong.example")
                    .build()
                    .unwrap();
                let (s, c) = tokio::join!(sc.tls_server(&ctx.server_config), cc.tls(config));
                assert!(c.is_err());
                assert!(s.is_err());
            },
        )
        .await;

    report
        .check(
            "STARTTLS, peer that never answers (handshake timeout)",
            |_| async {
                let (client, server) = pair(ctx, true).await;
                let sc = server.connection().unwrap();
                let r = sc.tls_server(&ctx.quick_timeout_config).await;
                assert!(r.is_err());
                drop(client);
            },
        )
        .await;

    report
        .check("TLS over a Unix socket", |i| async move {
            let path = ctx.dir.join(&format!("t{i}.sock"));
            let listener = a_socket(&ctx.selector)
                .tcp()
                .bind(UnixSocketAddress::new(&path))
                .await
                .unwrap();
            let config = ctx
                .pki
                .client_config()
                .server_name("localhost")
                .build()
                .unwrap();
            let (server, client) = tokio::join!(
                async {
                    listener
                        .accept()
                        .await
                        .unwrap()
                        .tls_server(&ctx.server_config)
                        .await
                        .unwrap()
                },
                async {
                    a_socket(&ctx.selector)
                        .tcp()
                        .connect(UnixSocketAddress::new(&path))
                        .await
                        .unwrap()
                        .tls(config)
                        .await
                        .unwrap()
                }
            );
            let (mut server, mut client) = (server, client);
            let mut cout = client.open_write_channel(true).unwrap();
            let mut sin = server.open_read_channel().unwrap();
            cout.write_string_utf8("u\n").await.unwrap();
            assert_eq!(
                sin.read_line(64, LineEnding::Default)
                    .await
                    .unwrap()
                    .as_deref(),
                Some("u")
            );
            cout.flush_and_close().await.unwrap();
            assert_eq!(sin.read_line(64, LineEnding::Default).await.unwrap(), None);
            drop((cout, sin, client, server));
            listener.close();
            drop(listener);
            assert!(!path.exists());
        })
        .await;

    report
        .check("adopted std sockets", |_| async {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.set_nonblocking(true).unwrap();
            let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
            let listener = a_socket(&ctx.selector).tcp().from_std(l).unwrap();
            let server = listener.accept().await.unwrap();
            c.set_nonblocking(true).unwrap();
            let client = Socket::from_std(&ctx.selector, c).unwrap();
            client.close();
            server.close();
            listener.close();
        })
        .await;

    let reloading = ctx.pki.server_config().build().unwrap();
    let reloading = &reloading;
    report
        .check(
            "TLS server config reloaded between sessions",
            |_| async move {
                // A configuration built anew (its own session cache) replaces the last: the old
                // one goes once no connection uses it.
                reloading.reload(&ctx.pki.server_config().build().unwrap());
                let (server, client) = tokio::join!(
                    async {
                        ctx.listener
                            .accept()
                            .await
                            .unwrap()
                            .tls_server(reloading)
                            .await
                            .unwrap()
                    },
                    async {
                        a_socket(&ctx.selector)
                            .tcp()
                            .connect(("localhost", port))
                            .await
                            .unwrap()
                            .tls(ctx.client_config.clone())
                            .await
                            .unwrap()
                    }
                );
                client.close();
                server.close();
            },
        )
        .await;

    report
        .check("close_gracefully future dropped mid-way", |_| async {
            let (server, peer) =
                net_tests::loopback::accepted_with_full_buffers(&ctx.listener).await;
            let mut c = server.connection().unwrap();
            c.output.write_fully(&[1u8; 1000]).await.unwrap();
            cancelled(c.close_gracefully(Duration::from_secs(5))).await;
            drop(peer);
        })
        .await;

    report
        .check("STARTTLS handshake future dropped mid-way", |_| async {
            let (client, server) = pair(ctx, true).await;
            let mut sc = server.connection().unwrap();
            sc.output.write_string_utf8("OK\n").await.unwrap();
            cancelled(sc.tls_server(&ctx.server_config)).await;
            drop(client);
        })
        .await;

    report
        .check("TLS client handshake future dropped mid-way", |_| async {
            let (client, server) = pair(ctx, true).await;
            cancelled(client.tls(ctx.client_config.clone())).await;
            drop(server);
        })
        .await;
}
