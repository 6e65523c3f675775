//! What a TLS peer that reads nothing and asks for key update after key update makes our
//! connection hold: guarantees.md says a TLS connection whose peer reads nothing adds "the
//! encrypted records rustls queues for the socket, at most its default 64 KiB buffer limit".
//!
//! rustls holds one KeyUpdate reply at a time, and makes no other while it holds one; but a
//! write to the session, even of nothing, first moves the reply it holds into its queue,
//! whatever the queue's limit. A read path that wrote nothing after every read (to send the
//! reply on a connection that only reads), or a blocked write polled again at every wake-up
//! of its task, grew the queue by one reply per KeyUpdate of such a peer: without bound, and
//! `socket_timeout` never ends a peer that keeps sending.
//!
//! This binary installs a counting global allocator (`stats_alloc`; the workspace forbids
//! `unsafe`). The count is process-wide: the tests run one at a time, and each measures only
//! while its own scenario runs.

use std::alloc::System;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, UnixSocketAddress, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tests::{HANG_LIMIT, TempDir};
use net_tls::{TlsExt, rustls};
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Live heap bytes of the whole process.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

/// KeyUpdates before the measurement (the socket's buffers fill meanwhile), and measured.
const WARM_UP: usize = 2_000;
const MEASURED: usize = 10_000;
/// What the connection may grow by over the measured KeyUpdates: rustls's queue is bounded by
/// 64 KiB, and is near it already when the measurement starts. (Unbounded, it grew by 27 to 53
/// bytes per KeyUpdate: 270 to 530 KB here.)
const BOUND: isize = 128 * 1024;

/// Our TLS server only reads.
#[test]
fn key_update_replies_to_a_peer_that_reads_nothing_stay_bounded() {
    key_update_flood(false);
}

/// Our TLS server reads, and writes more than the socket and rustls take, in the same task
/// (`join!`): its write waits on the full socket and is polled again at every wake-up of the
/// task for the reader.
#[test]
fn key_update_replies_to_a_peer_that_reads_nothing_stay_bounded_while_we_write() {
    key_update_flood(true);
}

/// A TLS 1.3 client that never reads sends, again and again, a KeyUpdate that requests one
/// back and then a line, and waits until the server has read that line before the next pair
/// (so that each is read on its own), over a Unix socket (whose send buffer fills after a few
/// hundred of the server's small records, and which loses nothing).
fn key_update_flood(writes: bool) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let selector = runtime.block_on(async { SelectorManager::new() });
    let ca = TestCa::new("key update memory ca");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let dir = TempDir::new("key-update-memory");
    let path = dir.join("server.sock");
    let listener = runtime.block_on(async {
        a_socket(&selector)
            .tcp()
            .bind(UnixSocketAddress::new(&path))
            .await
            .unwrap()
    });
    let lines = Arc::new(AtomicUsize::new(0));
    let server = {
        let lines = Arc::clone(&lines);
        runtime.spawn(async move {
            let socket = listener.accept().await.unwrap();
            let mut tls = socket.tls_server(&config).await.unwrap();
            let mut input = tls.open_read_channel().unwrap();
            let mut output = tls.open_write_channel(false).unwrap();
            let read = async {
                while let Ok(Some(_)) = input.read_line(1024, LineEnding::Default).await {
                    lines.fetch_add(1, Ordering::Release);
                }
            };
            let write = async {
                if writes {
                    let _ = output.write_fully(&vec![b'w'; 8 * 1024 * 1024]).await;
                }
            };
            tokio::join!(read, write);
            output.cancel();
            tls.close();
        })
    };

    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    let mut client = rustls::ClientConnection::new(rustls_client(&ca), localhost()).unwrap();
    while client.is_handshaking() {
        client.complete_io(&mut stream).unwrap();
    }
    // From here on the client never reads.
    let read_by_the_server = |n: usize| {
        let deadline = Instant::now() + HANG_LIMIT;
        while lines.load(Ordering::Acquire) < n {
            assert!(
                Instant::now() < deadline,
                "the server read {} of {n} lines",
                lines.load(Ordering::Acquire)
            );
            std::thread::yield_now();
        }
    };
    let mut send = |client: &mut rustls::ClientConnection, line: &[u8]| {
        client.writer().write_all(line).unwrap();
        while client.wants_write() {
            client.write_tls(&mut stream).unwrap();
        }
    };
    send(&mut client, b"hello\n");
    read_by_the_server(1);
    let mut before = 0;
    for i in 0..WARM_UP + MEASURED {
        if i == WARM_UP {
            before = live();
        }
        client.refresh_traffic_keys().unwrap();
        send(&mut client, b"x\n");
        read_by_the_server(i + 2);
    }
    let grown = live() - before;
    drop(stream);
    runtime.block_on(async {
        let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    });
    assert!(
        grown < BOUND,
        "our TLS server's heap grew by {grown} bytes over {MEASURED} KeyUpdates from a peer \
         that reads nothing (writes too: {writes})"
    );
}
