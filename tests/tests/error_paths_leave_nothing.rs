//! Leaks on error paths: a `bind`, `connect` (TCP, Unix, UDP; with options and local
//! addresses), adoption or PROXY protocol header that fails, run many times, leaves no heap
//! memory, descriptor, task or thread behind in proportion to the runs (the harness of
//! `net_tests::leaks`). `lifecycles_leave_nothing.rs` checks the paths that succeed, and the
//! TLS and STARTTLS handshakes that fail. Each check also asserts the error the failure is
//! documented to give.
//!
//! This binary installs a counting global allocator (`stats_alloc`; the workspace forbids
//! `unsafe`): the counts are process-wide, so the file holds a single `#[test]`.
//! `LEAKS_ONLY=<part of a name>` runs only the matching checks; `LEAKS_SANITY=1` adds one that
//! leaks on purpose.

use std::alloc::System;
use std::io::ErrorKind;
use std::time::Duration;

use net_sockets::{Error, ProxyProtocol, SelectorManager, UnixSocketAddress, a_socket};
use net_tests::TempDir;
use net_tests::leaks::{Leaks as Report, N1};
use net_tests::loopback::RefusingPort;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

#[test]
fn error_paths_leave_nothing_behind() {
    // A span a connection leaves open shows in the heap counted.
    let _spans = net_tests::leaks::count_spans();
    let runtime = net_tests::leaks::runtime();
    runtime.block_on(async {
        let selector = SelectorManager::new();
        let dir = TempDir::new("error-leaks");
        let mut report = Report::new(live);
        report.sanity_if_asked().await;
        sockets(&selector, &dir, &mut report).await;
        report.assert_none_left("error paths");
    });
}

async fn sockets(selector: &SelectorManager, dir: &TempDir, report: &mut Report) {
    let held = a_socket(selector)
        .tcp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let held_address = held.local_address();
    report
        .check("tcp bind: address in use, with options", |_| async {
            let e = a_socket(selector)
                .tcp()
                .send_buffer_size(64 * 1024)
                .receive_buffer_size(64 * 1024)
                .type_of_service(0x10)
                .keep_alive(true)
                .backlog(8)
                .bind(held_address.clone())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        })
        .await;
    report
        .check("tcp bind: an option the OS refuses", |_| async {
            let e = a_socket(selector)
                .tcp()
                .keep_alive_count(0)
                .bind(("127.0.0.1", 0))
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidOption { .. }), "{e:?}");
        })
        .await;
    report
        .check("tcp bind: an address this host lacks", |_| async {
            let e = a_socket(selector)
                .tcp()
                .bind(("192.0.2.1", 0))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrNotAvailable, "{e:?}");
        })
        .await;
    let refusing = RefusingPort::new();
    report
        .check("tcp connect: refused, with a local address", |_| async {
            let e = a_socket(selector)
                .tcp()
                .local_address(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                .connect(refusing.address())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        })
        .await;
    report
        .check("tcp connect: a local address in use", |_| async {
            let e = a_socket(selector)
                .tcp()
                .local_address(held_address.clone())
                .connect(refusing.address())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        })
        .await;
    report
        .check(
            "tcp connect: a host name, every address refused",
            |_| async {
                let e = a_socket(selector)
                    .tcp()
                    .connect(("localhost", refusing.port()))
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
            },
        )
        .await;
    report
        .check("tcp connect: an option the OS refuses", |_| async {
            let e = a_socket(selector)
                .tcp()
                .keep_alive_count(0)
                .connect(refusing.address())
                .await
                .unwrap_err();
            assert!(matches!(e, Error::InvalidOption { .. }), "{e:?}");
        })
        .await;
    let file = dir.write("a-plain-file", "x");
    report
        .check("unix bind: a file is there", |_| async {
            let e = a_socket(selector)
                .tcp()
                .bind(UnixSocketAddress::new(&file))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        })
        .await;
    let missing = dir.join("no-such-dir/s.sock");
    report
        .check("unix bind: a directory that does not exist", |_| async {
            let e = a_socket(selector)
                .tcp()
                .bind(UnixSocketAddress::new(&missing))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
        })
        .await;
    let nobody = dir.join("nobody.sock");
    report
        .check("unix connect: nobody there, with a local path", |i| {
            let local = dir.join(&format!("client-{i}.sock"));
            let nobody = nobody.clone();
            async move {
                let e = a_socket(selector)
                    .tcp()
                    .local_address(UnixSocketAddress::new(&local))
                    .connect(UnixSocketAddress::new(&nobody))
                    .await
                    .unwrap_err();
                assert_eq!(e.kind(), ErrorKind::NotFound, "{e:?}");
                assert!(!local.exists(), "{} left", local.display());
            }
        })
        .await;
    report
        .check("unix connect: a plain file", |_| async {
            let e = a_socket(selector)
                .tcp()
                .connect(UnixSocketAddress::new(&file))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
        })
        .await;
    let udp_held = a_socket(selector)
        .udp()
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let udp_address = udp_held.local_address();
    report
        .check("udp bind: address in use", |_| async {
            let e = a_socket(selector)
                .udp()
                .broadcast(true)
                .bind(udp_address.clone())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        })
        .await;
    report
        .check("udp connect: port 0", |_| async {
            let e = a_socket(selector)
                .udp()
                .connect(("127.0.0.1", 0))
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        })
        .await;
    report
        .check("udp connect_from: a local port in use", |_| async {
            let e = a_socket(selector)
                .udp()
                .connect_from(("127.0.0.1", 9), udp_address.clone())
                .await
                .unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AddrInUse, "{e:?}");
        })
        .await;
    report
        .check("udp: a refused connected exchange", |_| async {
            let gone = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let to = gone.local_addr().unwrap();
            drop(gone);
            let udp = a_socket(selector).udp().connect(to).await.unwrap();
            udp.send(net_sockets::Datagram::new(&b"x"[..], to).unwrap())
                .await
                .unwrap();
            let e = udp.receive().await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
            udp.close();
        })
        .await;
    report
        .check("adopt: a socket of the wrong kind", |_| async {
            let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            let wrong = std::net::TcpListener::from(std::os::fd::OwnedFd::from(udp));
            let e = net_sockets::ServerSocket::from_std(selector, wrong).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e:?}");
        })
        .await;
    let proxied = a_socket(selector)
        .tcp()
        .proxy_protocol(ProxyProtocol::Required)
        .proxy_header_timeout(Duration::from_millis(5))
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let pport = proxied.port().unwrap();
    let proxied = &proxied;
    report
        .check_n(
            "accept: a PROXY header that never comes",
            N1,
            100,
            |_| async {
                let mut peer = tokio::net::TcpStream::connect(("127.0.0.1", pport))
                    .await
                    .unwrap();
                let mut got = Vec::new();
                tokio::select! {
                    _ = proxied.accept() => panic!("a connection without a header was admitted"),
                    _ = peer.read_to_end(&mut got) => {}
                }
            },
        )
        .await;
    report
        .check("accept: a PROXY header cut short by a reset", |_| async {
            let peer = tokio::net::TcpStream::connect(("127.0.0.1", pport))
                .await
                .unwrap();
            let mut peer = peer;
            peer.write_all(b"PROXY TCP4 10.0.0.1").await.unwrap();
            net_tests::fault::reset(peer);
        })
        .await;
}
