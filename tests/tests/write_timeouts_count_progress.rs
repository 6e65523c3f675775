//! `socket_timeout` on writes is an inactivity timeout, as the builder's docs say: "only one
//! that completes on the socket (bytes received or sent ...) starts it afresh". A large write
//! to a peer that reads steadily is many sends, each of which goes through after a short wait:
//! the write takes many times the timeout in all and never times out, through the write
//! channel's `write_fully` (past 8 KiB: straight to the socket) and through `into_stream`'s
//! `write_all` alike. (The reads' side of this is pinned by
//! `sockets_tcp::socket_timeout_is_about_inactivity_not_total_time`; a peer that reads slower
//! than the kernel wakes writers by `timeouts_documented`.)

use std::time::{Duration, Instant};

use net_sockets::SelectorManager;
use net_tests::fault::raw_peer_of;
use net_tests::loopback::tcp_listener_with;
use net_tests::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The timeout: the peer never leaves the writer waiting this long.
const TIMEOUT: Duration = Duration::from_millis(250);

/// What is written: 64 reads of the peer, each after a 20 ms pause, at least 1.28 s in all.
const TOTAL: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;
const PAUSE: Duration = Duration::from_millis(20);

/// Reads everything from `peer`, `CHUNK` at a time with a `PAUSE` between: how many bytes.
async fn read_steadily(mut peer: tokio::net::TcpStream) -> usize {
    let mut chunk = vec![0; CHUNK];
    let mut read = 0;
    loop {
        let n = peer.read(&mut chunk).await.unwrap();
        if n == 0 {
            return read;
        }
        read += n;
        tokio::time::sleep(PAUSE).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_write_to_a_peer_that_reads_steadily_never_times_out() {
    let selector = SelectorManager::new();
    let listener = tcp_listener_with(&selector, |b| {
        b.socket_timeout(TIMEOUT).send_buffer_size(64 * 1024)
    })
    .await;
    let payload = vec![7u8; TOTAL];
    for stream in [false, true] {
        let case = if stream { "stream" } else { "channel" };
        let (peer, mut socket) = raw_peer_of(&listener).await;
        let reading = tokio::spawn(read_steadily(peer));
        let start = Instant::now();
        if stream {
            let mut stream = socket.into_stream().unwrap();
            within(stream.write_all(&payload))
                .await
                .unwrap_or_else(|e| panic!("{case}: {e:?} after {:?}", start.elapsed()));
            within(stream.shutdown()).await.unwrap();
        } else {
            let mut output = socket.open_write_channel(false).unwrap();
            within(output.write_fully(&payload))
                .await
                .unwrap_or_else(|e| panic!("{case}: {e:?} after {:?}", start.elapsed()));
            within(output.flush_and_close()).await.unwrap();
        }
        let took = start.elapsed();
        assert_eq!(within(reading).await.unwrap(), TOTAL, "{case}");
        assert!(
            took > 3 * TIMEOUT,
            "{case}: the write took {took:?}, not many times the timeout"
        );
    }
    selector.close();
}
