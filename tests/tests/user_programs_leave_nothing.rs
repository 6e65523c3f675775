//! Leaks of the user programs' shapes (`user_programs.rs`): a relay with `copy_and_close` and
//! with `copy_bidirectional` over joined channels, its reset path (`SO_LINGER` zero through
//! `with_sock_ref`), a TLS front that writes a PROXY header to a backend of ours, and a server
//! shut down gracefully with clients connected. Each run must leave no heap, descriptor, task
//! or thread behind (see `net_tests::leaks`).
//!
//! This binary installs a counting global allocator (`stats_alloc`; the workspace forbids
//! `unsafe`): the counts are process-wide, so the file holds a single `#[test]`.

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use net_io::LineEnding;
use net_sockets::{ProxyProtocol, SelectorManager, ServerSocket, a_socket};
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

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// How a relay run passes bytes on, and whether its backend resets.
#[derive(Clone, Copy, Debug)]
enum Relay {
    CopyAndClose,
    Bidirectional,
}

/// One relayed connection: the client sends `hello` and half-closes, the backend echoes it
/// and ends (or, with `reset`, resets after the echo), the relay passes everything on.
async fn relay_once(
    selector: &SelectorManager,
    relay: &ServerSocket,
    backend: &tokio::net::TcpListener,
    how: Relay,
    reset: bool,
) {
    let target = backend.local_addr().unwrap();
    let session = async {
        let client = relay.accept().await.unwrap();
        let mut conn = client.connection().unwrap();
        let port = conn.input.read_u16().await.unwrap();
        let upstream = a_socket(selector)
            .tcp()
            .connect(loopback(port))
            .await
            .unwrap();
        conn.output.write_u8(0).await.unwrap();
        conn.output.flush().await.unwrap();
        match how {
            Relay::CopyAndClose => {
                let mut up = upstream.connection().unwrap();
                let copied = tokio::try_join!(
                    conn.input.copy_and_close(&mut up.output, u64::MAX),
                    up.input.copy_and_close(&mut conn.output, u64::MAX),
                );
                assert_eq!(copied.is_err(), reset, "{copied:?}");
            }
            Relay::Bidirectional => {
                let mut up = upstream.into_stream().unwrap();
                let socket = conn.socket;
                let mut down = tokio::io::join(conn.input, conn.output);
                let copied = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                assert_eq!(copied.is_err(), reset, "{copied:?}");
                if copied.is_err() {
                    let zero = |s: socket2::SockRef<'_>| s.set_linger(Some(Duration::ZERO));
                    let _ = socket.with_sock_ref(zero);
                    let _ = up.with_sock_ref(zero);
                    socket.close();
                }
            }
        }
    };
    let backend_side = async {
        let (mut stream, _) = backend.accept().await.unwrap();
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).await.unwrap();
        stream.write_all(&got).await.unwrap();
        if reset {
            socket2::SockRef::from(&stream)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(stream);
        } else {
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
        }
    };
    let client_side = async {
        let mut client = tokio::net::TcpStream::connect(loopback(relay.port().unwrap()))
            .await
            .unwrap();
        client
            .write_all(&target.port().to_be_bytes())
            .await
            .unwrap();
        let mut ok = [0u8; 1];
        client.read_exact(&mut ok).await.unwrap();
        client.write_all(b"hello").await.unwrap();
        if !reset {
            client.shutdown().await.unwrap();
        }
        let mut back = Vec::new();
        let end = client.read_to_end(&mut back).await;
        assert_eq!(end.is_err(), reset, "{end:?}");
    };
    tokio::join!(session, backend_side, client_side);
}

/// One connection through a TLS front to a backend of ours behind a PROXY header: a line there
/// and back, then both ends close.
async fn front_once(
    selector: &SelectorManager,
    front: &ServerSocket,
    backend: &ServerSocket,
    server_config: &TlsServerConfig,
    client_config: &TlsConfig,
) {
    let front_side = async {
        let tls = front
            .accept()
            .await
            .unwrap()
            .tls_server(server_config)
            .await
            .unwrap();
        let (from, to) = (tls.remote_address(), tls.local_address());
        let (from, to) = (from.as_inet().unwrap(), to.as_inet().unwrap());
        let mut up = a_socket(selector)
            .tcp()
            .connect(loopback(backend.port().unwrap()))
            .await
            .unwrap()
            .into_stream()
            .unwrap();
        let header = format!(
            "PROXY TCP4 {} {} {} {}\r\n",
            from.ip(),
            to.ip(),
            from.port(),
            to.port()
        );
        up.write_all(header.as_bytes()).await.unwrap();
        let mut tls = tls.into_stream().unwrap();
        tokio::io::copy_bidirectional(&mut tls, &mut up)
            .await
            .unwrap();
    };
    let backend_side = async {
        let socket = backend.accept().await.unwrap();
        assert!(socket.proxy_address().is_some());
        let mut conn = socket.connection().unwrap();
        let line = conn
            .input
            .read_line(100, LineEnding::Default)
            .await
            .unwrap();
        conn.output
            .write_string_utf8(&format!("{}\n", line.unwrap()))
            .await
            .unwrap();
        conn.close_gracefully(Duration::from_secs(5)).await.unwrap();
    };
    let client_side = async {
        let tls = a_socket(selector)
            .tcp()
            .connect(("localhost", front.port().unwrap()))
            .await
            .unwrap()
            .tls(client_config.clone())
            .await
            .unwrap();
        let mut conn = tls.connection().unwrap();
        conn.output.write_string_utf8("hello\n").await.unwrap();
        conn.output.flush_and_close().await.unwrap();
        let back = conn.input.read_remaining(100).await.unwrap();
        assert_eq!(back, &b"hello\n"[..]);
    };
    tokio::join!(front_side, backend_side, client_side);
}

/// A server bound for the run, a client with a request answered and one more pending, then a
/// graceful shutdown: the session says goodbye and closes gracefully, the client leaves.
async fn shutdown_once(selector: &SelectorManager) {
    let server = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = server.port().unwrap();
    let session = async {
        let socket = server.accept().await.unwrap();
        let mut conn = socket.connection().unwrap();
        loop {
            let line = tokio::select! {
                biased;
                line = conn.input.read_line(100, LineEnding::Default) => line.unwrap(),
                () = conn.socket.shutdown_requested() => break,
            };
            conn.output
                .write_string_utf8(&format!("{}\n", line.unwrap()))
                .await
                .unwrap();
            conn.output.flush().await.unwrap();
        }
        conn.output.write_string_utf8("bye\n").await.unwrap();
        conn.close_gracefully(Duration::from_secs(5)).await.unwrap();
    };
    let client_and_shutdown = async {
        let mut client = tokio::net::TcpStream::connect(loopback(port))
            .await
            .unwrap();
        client.write_all(b"one\ntw").await.unwrap();
        let mut one = [0u8; 4];
        client.read_exact(&mut one).await.unwrap();
        let (report, rest) = tokio::join!(server.shutdown(Duration::from_secs(5)), async {
            let mut rest = Vec::new();
            client.read_to_end(&mut rest).await.unwrap();
            drop(client);
            rest
        });
        assert_eq!(rest, b"bye\n");
        assert_eq!((report.finished, report.cut), (1, 0));
    };
    tokio::join!(session, client_and_shutdown);
}

#[test]
fn user_programs_leave_nothing_behind() {
    // A span a connection leaves open shows in the heap counted.
    let _spans = net_tests::leaks::count_spans();
    let runtime = net_tests::leaks::runtime();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let relay = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let backend = tokio::net::TcpListener::bind(loopback(0)).await.unwrap();
        let pki = Pki::generate();
        let server_config = pki.server_config().build().unwrap();
        let client_config = pki.client_config().build().unwrap();
        let front = a_socket(&selector)
            .tcp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let proxied = a_socket(&selector)
            .tcp()
            .proxy_protocol(ProxyProtocol::Required)
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let mut report = Report::new(live);
        for how in [Relay::CopyAndClose, Relay::Bidirectional] {
            for reset in [false, true] {
                report
                    .check(&format!("relay {how:?}, reset {reset}"), |_| {
                        relay_once(&selector, &relay, &backend, how, reset)
                    })
                    .await;
            }
        }
        // rustls's session cache (256 on the server) fills before the first mark.
        report
            .check_n("TLS front to a PROXY backend", 300, N2, |_| {
                front_once(&selector, &front, &proxied, &server_config, &client_config)
            })
            .await;
        report
            .check("graceful shutdown with a client", |_| {
                shutdown_once(&selector)
            })
            .await;
        assert!(
            report.failures.is_empty(),
            "user programs that left something behind:\n{}",
            report.failures.join("\n")
        );
    });
}
