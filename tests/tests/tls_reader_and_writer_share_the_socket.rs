//! A TLS socket's read and write channels in two tasks at once (one session between them),
//! against a peer that both sends and reads, steadily: neither waits for ever on the other, the
//! reader (which sends the records the session owes as it reads, some of them the writer's)
//! does not make the writer's `socket_timeout` expire while the peer is reading all along, and
//! every byte arrives. Also through the peer's KeyUpdate requests, which the reader answers
//! while the writer waits for room.
//!
//! The peer is a rustls client driven by hand on a raw TCP stream: every millisecond it sends a
//! small record, and reads at most a few KiB (some MB/s, far above the rate under which
//! `socket_timeout`'s docs say a write times out).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use net_sockets::{SelectorManager, a_socket};
use net_tests::pki::TestCa;
use net_tests::tls::{localhost, records, rustls_client};
use net_tls::TlsExt;

/// The socket's `socket_timeout`: far longer than the peer's pauses between reads, even on a
/// loaded machine that runs the peer late. (At 1 s, a starved test saw the write time out, its
/// peer having paused that long.) A reader that kept the writer from making progress would
/// still make it time out, and the peer stops 2 s after that.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long the peer goes on at most: a bound for a hang, not a rate the test asks for (a
/// starved peer, a few KiB a turn, took over 30 s for the 4 MiB).
const PEER_BUDGET: Duration = Duration::from_secs(120);
/// What our server writes.
const LEN: usize = 4 * 1024 * 1024;

/// Our server writes `LEN` bytes in one task while another reads what the peer sends, with
/// `socket_timeout(TIMEOUT)` and a small send buffer; the peer sends a one-byte record every
/// millisecond and reads at most 4 KiB each millisecond (never pausing for as long as the
/// timeout). The write must go through: the peer reads all the time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_beside_a_busy_reader_does_not_time_out_while_the_peer_reads() {
    both_ways(false).await;
}

/// The same, the peer asking for our key update every 50 records it sends: our reader answers
/// them while our writer waits for room, and both go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_and_a_reader_go_on_through_the_peers_key_updates() {
    both_ways(true).await;
}

/// Our server's reader and writer in two tasks, against the peer described above; with
/// `key_updates`, the peer asks for our key update every 50 records.
async fn both_ways(key_updates: bool) {
    let selector = SelectorManager::new();
    let ca = TestCa::new("reader-and-writer");
    let config = ca.server(&["localhost"]).server_config().build().unwrap();
    let listener = a_socket(&selector)
        .tcp()
        .socket_timeout(TIMEOUT)
        .send_buffer_size(64 * 1024)
        .bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.port().unwrap();
    let connector = tokio_rustls::TlsConnector::from(rustls_client(&ca));
    let (server, client) = tokio::join!(
        async { listener.accept().await.unwrap().tls_server(&config).await },
        async {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(32 * 1024).unwrap();
            let tcp = socket.connect(([127, 0, 0, 1], port).into()).await.unwrap();
            connector.connect(localhost(), tcp).await
        }
    );
    let mut server = server.unwrap();
    let (tcp, mut conn) = client.unwrap().into_inner();

    let mut input = server.open_read_channel().unwrap();
    let mut output = server.open_write_channel(true).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            let mut buf = vec![0u8; 4096];
            let mut read = 0u64;
            // Each turn bounded well under `TIMEOUT`: the peer sends every millisecond.
            while !done.load(Ordering::Acquire) {
                match tokio::time::timeout(TIMEOUT / 2, input.read_available(&mut buf)).await {
                    Ok(Ok(0)) => return Err(format!("the end after {read} bytes")),
                    Ok(Ok(n)) => read += n as u64,
                    Ok(Err(e)) => return Err(format!("our read, after {read} bytes: {e:?}")),
                    Err(_) => {}
                }
            }
            Ok(read)
        }
    });
    let writer = tokio::spawn({
        let done = Arc::clone(&done);
        async move {
            let started = Instant::now();
            let written = output.write_fully(&vec![7u8; LEN]).await;
            done.store(true, Ordering::Release);
            (written, started.elapsed(), output.total_bytes_written())
        }
    });

    // The peer: a record out and a few KiB in, every millisecond, until it has everything
    // (or the writer is over and nothing came for 2 s, or `PEER_BUDGET` passed).
    let received = Arc::new(AtomicU64::new(0));
    let mut longest_pause = Duration::ZERO;
    let mut last_read = Instant::now();
    let mut out = Vec::new();
    let mut turns = 0u64;
    let mut buf = vec![0u8; 4096];
    let mut plain = vec![0u8; 64 * 1024];
    let started = Instant::now();
    while (received.load(Ordering::Relaxed) as usize) < LEN
        && !(writer.is_finished() && last_read.elapsed() > Duration::from_secs(2))
        && started.elapsed() < PEER_BUDGET
    {
        tokio::time::sleep(Duration::from_millis(1)).await;
        if out.is_empty() {
            turns += 1;
            if key_updates && turns.is_multiple_of(50) {
                // A KeyUpdate asking for ours, which our reader answers while the writer
                // waits for room.
                conn.refresh_traffic_keys().unwrap();
            }
            std::io::Write::write_all(&mut conn.writer(), b"x").unwrap();
            out = records(&mut conn);
        }
        match tcp.try_write(&out) {
            Ok(n) => {
                out.drain(..n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the peer's send: {e}"),
        }
        match tcp.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let now = Instant::now();
                longest_pause = longest_pause.max(now - last_read);
                last_read = now;
                let mut slice = &buf[..n];
                while !slice.is_empty() {
                    conn.read_tls(&mut slice).unwrap();
                    conn.process_new_packets().unwrap();
                }
                loop {
                    match std::io::Read::read(&mut conn.reader(), &mut plain) {
                        Ok(n) if n > 0 => {
                            assert!(plain[..n].iter().all(|&b| b == 7), "the bytes written");
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        _ => break,
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("the peer's read: {e}"),
        }
    }
    let (written, took, total) = tokio::time::timeout(Duration::from_secs(30), writer)
        .await
        .expect("the writer ended")
        .unwrap();
    let received = received.load(Ordering::Relaxed);
    assert!(
        written.is_ok(),
        "our write failed with {written:?} after {took:?} ({total} bytes written), though the \
         peer read all along: it received {received} bytes, never pausing more than \
         {longest_pause:?} between reads"
    );
    assert_eq!(received as usize, LEN);
    if key_updates {
        assert!(turns >= 100, "the peer sent {turns} records");
    }
    let read = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the reader ended")
        .unwrap();
    assert!(read.as_ref().is_ok_and(|&n| n > 0), "{read:?}");
    drop(conn);
    drop(tcp);
    drop(server);
    selector.close();
}
