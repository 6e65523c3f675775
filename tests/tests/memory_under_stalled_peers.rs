//! Bounded memory and backpressure. A peer that does not read (or pipelines without
//! reading) must make our writer wait, and what our side holds meanwhile must stay within the
//! documented buffers, measured with a counting allocator (process-wide: the tests run one at a
//! time, each measuring only while its own scenario runs).

use std::alloc::System;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use net_io::LineEnding;
use net_sockets::{SelectorManager, a_socket};
use net_tests::loopback::tcp_listener_with;
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, rustls_client};
use net_tls::TlsExt;
use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};
use tokio::io::AsyncWriteExt;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Live heap bytes of the whole process.
fn live() -> isize {
    let s = GLOBAL.stats();
    s.bytes_allocated as isize - s.bytes_deallocated as isize
}

fn run<F: Future<Output = ()>>(test: impl FnOnce() -> F) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(test());
}

const ANSWER: [u8; 1024] = [b'a'; 1024];

/// Writes `chunk` again and again into `stream` until a write makes no progress for 300 ms (the
/// peer stopped reading and every buffer on the way is full), or `limit` passes; whether it
/// stalled.
async fn write_until_stalled<W: tokio::io::AsyncWrite + Unpin>(
    stream: &mut W,
    chunk: &[u8],
    limit: Duration,
) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(300), stream.write_all(chunk)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("the flood failed: {e}"),
            Err(_) => return true,
        }
    }
    false
}

/// Pipelined requests of a client that never reads the answers: a server that answers each
/// request (1 KiB per 4-byte request) must stop reading once its answers cannot leave, and hold
/// no more than its buffers (write channel, flush coalescing's 64 KiB, read buffer).
#[test]
fn a_pipelining_client_that_never_reads_stops_the_server_plain() {
    for explicit_flush in [false, true] {
        run(|| async move {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b).await;
            let port = listener.port().unwrap();
            let read = Arc::new(AtomicUsize::new(0));
            let before = live();
            let server = {
                let read = Arc::clone(&read);
                tokio::spawn(async move {
                    let mut socket = listener.accept().await.unwrap();
                    let mut input = socket.open_read_channel().unwrap();
                    let mut output = socket.open_write_channel(!explicit_flush).unwrap();
                    while let Ok(Some(_)) = input.read_line(1024, LineEnding::Default).await {
                        read.fetch_add(1, Ordering::Relaxed);
                        if output.write_fully(&ANSWER).await.is_err() {
                            break;
                        }
                        if explicit_flush && output.flush().await.is_err() {
                            break;
                        }
                    }
                    (socket, input, output)
                })
            };
            let mut client = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let requests = b"req\n".repeat(16 * 1024);
            let stalled = write_until_stalled(&mut client, &requests, Duration::from_secs(5)).await;
            let grown = live() - before;
            let lines = read.load(Ordering::Relaxed);
            eprintln!(
                "plain pipelining (explicit flush {explicit_flush}): stalled {stalled}, lines read {lines}, heap grew {grown}"
            );
            assert!(
                stalled,
                "the server never stopped reading: {lines} lines read"
            );
            assert!(grown < 1024 * 1024, "heap grew by {grown} bytes");
            drop(client);
            server.abort();
        });
    }
}

/// The same over TLS (a tokio-rustls client that never reads).
#[test]
fn a_pipelining_client_that_never_reads_stops_the_server_tls() {
    run(|| async {
        let selector = SelectorManager::new();
        let ca = TestCa::new("memory ca");
        let config = ca.server(&["localhost"]).server_config().build().unwrap();
        let listener = tcp_listener_with(&selector, |b| b).await;
        let port = listener.port().unwrap();
        let read = Arc::new(AtomicUsize::new(0));
        let server = {
            let read = Arc::clone(&read);
            tokio::spawn(async move {
                let socket = listener.accept().await.unwrap();
                let mut tls = socket.tls_server(&config).await.unwrap();
                let mut input = tls.open_read_channel().unwrap();
                let mut output = tls.open_write_channel(true).unwrap();
                while let Ok(Some(_)) = input.read_line(1024, LineEnding::Default).await {
                    read.fetch_add(1, Ordering::Relaxed);
                    if output.write_fully(&ANSWER).await.is_err() {
                        break;
                    }
                }
                (tls, input, output)
            })
        };
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut client = tokio_rustls::TlsConnector::from(rustls_client(&ca))
            .connect(localhost(), tcp)
            .await
            .unwrap();
        // One round trip, so that the server's handshake state is gone before the baseline.
        client.write_all(b"hello\n").await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while read.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let before = live();
        let requests = b"req\n".repeat(16 * 1024);
        let stalled = write_until_stalled(&mut client, &requests, Duration::from_secs(5)).await;
        let grown = live() - before;
        let lines = read.load(Ordering::Relaxed);
        eprintln!("tls pipelining: stalled {stalled}, lines read {lines}, heap grew {grown}");
        assert!(
            stalled,
            "the server never stopped reading: {lines} lines read"
        );
        assert!(grown < 1024 * 1024, "heap grew by {grown} bytes");
        drop(client);
        server.abort();
    });
}

/// UDP: a bound socket nobody receives from, flooded; a bound socket and a connected one that
/// send to a port nobody listens on, in a loop. The heap must not follow the datagram count.
#[test]
fn udp_floods_and_sends_to_a_dead_peer_do_not_grow_the_heap() {
    run(|| async {
        use net_sockets::Datagram;
        let selector = SelectorManager::new();
        let quiet = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let sender = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        let dead = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let dead_addr = dead.local_addr().unwrap();
        drop(dead);
        let connected = a_socket(&selector).udp().connect(dead_addr).await.unwrap();
        let to_quiet = quiet.local_address();
        let packet = bytes::Bytes::from(vec![7u8; 512]);
        // Warm up.
        for _ in 0..1000 {
            let _ = sender
                .send(Datagram::new(packet.clone(), to_quiet.clone()).unwrap())
                .await;
            let _ = sender
                .send(
                    Datagram::new(packet.clone(), net_sockets::SocketAddress::from(dead_addr))
                        .unwrap(),
                )
                .await;
            let _ = connected
                .send(
                    Datagram::new(packet.clone(), net_sockets::SocketAddress::from(dead_addr))
                        .unwrap(),
                )
                .await;
        }
        let before = live();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut errors = 0;
        for _ in 0..50_000 {
            if Instant::now() > deadline {
                break;
            }
            let _ = sender
                .send(Datagram::new(packet.clone(), to_quiet.clone()).unwrap())
                .await;
            let _ = sender
                .send(
                    Datagram::new(packet.clone(), net_sockets::SocketAddress::from(dead_addr))
                        .unwrap(),
                )
                .await;
            if connected
                .send(
                    Datagram::new(packet.clone(), net_sockets::SocketAddress::from(dead_addr))
                        .unwrap(),
                )
                .await
                .is_err()
            {
                errors += 1;
            }
        }
        let grown = live() - before;
        eprintln!("udp: heap grew {grown}, connected errors {errors}");
        assert!(grown < 256 * 1024, "heap grew by {grown}");
    });
}

/// `copy_to`, `tokio::io::copy` into a write channel, and tokio-util's `FramedWrite` over a TLS
/// stream, each towards a peer that never reads, from a source that never ends: the copy must
/// stop taking from the source.
#[test]
fn copies_to_a_peer_that_never_reads_stop_the_source() {
    for how in 0..3 {
        run(|| async move {
            let selector = SelectorManager::new();
            let listener = tcp_listener_with(&selector, |b| b).await;
            let port = listener.port().unwrap();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port));
            let (accepted, _stalled_peer) = tokio::join!(listener.accept(), tcp);
            let mut accepted = accepted.unwrap();
            let (mut src_w, mut src_r) = net_io::ByteChannel::new(false);
            let fed = Arc::new(AtomicUsize::new(0));
            let feeding = Arc::clone(&fed);
            let feeder = tokio::spawn(async move {
                let chunk = vec![b'f'; 16 * 1024];
                for _ in 0..100_000 {
                    if src_w.write_fully(&chunk).await.is_err() {
                        break;
                    }
                    feeding.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            });
            let before = live();
            let copier = tokio::spawn(async move {
                match how {
                    0 => {
                        let mut out = accepted.open_write_channel(false).unwrap();
                        let _ = src_r.copy_to(&mut out, u64::MAX).await;
                    }
                    1 => {
                        let mut out = accepted.open_write_channel(true).unwrap();
                        let _ = tokio::io::copy(&mut src_r, &mut out).await;
                    }
                    _ => {
                        use futures_sink::Sink;
                        let stream = accepted.into_stream().unwrap();
                        let mut framed = tokio_util::codec::FramedWrite::new(
                            stream,
                            tokio_util::codec::BytesCodec::new(),
                        );
                        loop {
                            let Ok(Some(b)) = src_r
                                .read_frame(&mut tokio_util::codec::BytesCodec::new())
                                .await
                                .map(|f| f.map(bytes::BytesMut::freeze))
                            else {
                                break;
                            };
                            if std::future::poll_fn(|cx| {
                                Sink::<bytes::Bytes>::poll_ready(
                                    std::pin::Pin::new(&mut framed),
                                    cx,
                                )
                            })
                            .await
                            .is_err()
                            {
                                break;
                            }
                            if std::pin::Pin::new(&mut framed).start_send(b).is_err() {
                                break;
                            }
                        }
                    }
                }
            });
            let mut last = 0;
            let mut peak = 0;
            let start = Instant::now();
            let mut same = 0;
            while start.elapsed() < Duration::from_secs(3) && same < 10 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                peak = peak.max(live() - before);
                let now = fed.load(Ordering::Relaxed);
                if now == last {
                    same += 1
                } else {
                    same = 0
                }
                last = now;
            }
            eprintln!(
                "copy {how}: fed {last}, stalled {}, peak heap {peak}",
                same >= 10
            );
            copier.abort();
            feeder.abort();
            assert!(same >= 10, "the source was never stopped");
            assert!(peak < 1024 * 1024, "heap grew by {peak}");
        });
    }
}

/// Receives dropped while they wait (a `select!` with a deadline, in a loop), on a quiet bound
/// socket and through `incoming()`: nothing stays behind per dropped receive.
#[test]
fn dropped_datagram_receives_leave_nothing_behind() {
    run(|| async {
        let selector = SelectorManager::new();
        let quiet = a_socket(&selector)
            .udp()
            .bind(("127.0.0.1", 0))
            .await
            .unwrap();
        for _ in 0..100 {
            let _ = tokio::time::timeout(Duration::from_micros(1), quiet.receive()).await;
        }
        let before = live();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut n = 0;
        while n < 20_000 && Instant::now() < deadline {
            n += 1;
            let mut receive = std::pin::pin!(quiet.receive());
            assert!(net_tests::pending_after_one_poll(receive.as_mut()).await);
            let mut incoming = quiet.incoming();
            let _ = std::future::poll_fn(|cx| {
                let _ = futures_core::Stream::poll_next(std::pin::Pin::new(&mut incoming), cx);
                std::task::Poll::Ready(())
            })
            .await;
        }
        let grown = live() - before;
        eprintln!("{n} dropped receives: heap grew {grown}");
        assert!(grown < 256 * 1024, "heap grew by {grown}");
    });
}
